"""The stream processor: validation, dedupe by eventID, event selectors and Insights (see docs/architecture.md)."""
