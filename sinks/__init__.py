"""Delivery workers: S3 log files and digests, CloudWatch Logs, SNS notifications (see docs/architecture.md)."""
