"""The runtime every worker role shares: consumer lifecycle, trails feed, stop on SIGTERM, endpoints."""
