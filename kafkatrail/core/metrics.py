"""Serving every worker's Prometheus metrics on /metrics."""

from __future__ import annotations

from prometheus_client import start_http_server


def serve_metrics(host: str, port: int) -> None:
    """Serve /metrics on host:port in a background thread (port 0 turns it off)."""
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise OSError(f"cannot serve /metrics on {host}:{port}: {exc.strerror} "
                      "(choose another port with --metrics-port, or 0 to turn it off)") from None
