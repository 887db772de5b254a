"""The faust app: validation, dedupe by eventID, event selectors and Insights (see DESIGN.md)."""
