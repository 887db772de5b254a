"""Every worker's HTTP endpoints: Prometheus metrics on /metrics, liveness on /healthz, readiness on /readyz.

`Health` is what a worker reports: it is alive while its loop keeps turning (`beat()` at least every
`stall_after_s`), and ready once it has what it needs to do its work (`ready`) while none of its
dependencies (Kafka, AWS: `kafkatrail.core.dependencies`) is reported unreachable and its commits keep up
(`commits_stalled`: records wait, yet no offset was committed for longer than the role's cadence allows).
`serve_endpoints` serves the three paths from one background thread; `scrape` reads a worker's /metrics back
(the demo, benchmarks and tests use it).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app

from kafkatrail.core.dependencies import DEPENDENCIES, Dependencies

StartResponse = Callable[[str, list[tuple[str, str]]], object]


class Health:
    """A worker's liveness (its loop turns) and readiness (it holds its partitions and state)."""

    def __init__(self, stall_after_s: float = 60.0, dependencies: Dependencies = DEPENDENCIES) -> None:
        self.stall_after_s = stall_after_s
        self.ready = False
        self.commits_stalled: str | None = None
        self.dependencies = dependencies
        self._last_beat = time.monotonic()

    def beat(self) -> None:
        """The worker's loop went round once."""
        self._last_beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._last_beat < self.stall_after_s

    def not_ready_because(self) -> str | None:
        """None when ready for /readyz, else why not (`not ready`, `kafka unreachable`, ...)."""
        if not self.alive():
            return "stalled"
        if down := self.dependencies.down():
            return f"{', '.join(down)} unreachable"
        if not self.ready:
            return "not ready"
        return self.commits_stalled


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scraper cannot hold up the next one."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not worth a log line each."""


def endpoints_app(health: Health) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """A WSGI app: /healthz and /readyz from `health`, everything else is Prometheus' exposition."""
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            problem = ("stalled" if not health.alive() else None) if path == "/healthz" else health.not_ready_because()
            start_response("503 Service Unavailable" if problem else "200 OK", [("Content-Type", "text/plain")])
            return [f"{problem or 'ok'}\n".encode()]
        return metrics(environ, start_response)

    return app


def serve_endpoints(host: str, port: int, health: Health) -> WSGIServer | None:
    """Serve /metrics, /healthz and /readyz on host:port in a daemon thread (port 0 turns them off)."""
    if not port:
        return None
    try:
        server = make_server(host, port, endpoints_app(health), server_class=_ThreadingServer,
                             handler_class=_QuietHandler)
    except OSError as exc:
        raise OSError(f"cannot serve /metrics on {host}:{port}: {exc.strerror} "
                      "(choose another port with --metrics-port, or 0 to turn it off)") from None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def scrape(url: str, timeout_s: float = 5.0) -> dict[str, float] | None:
    """The samples of a /metrics page by name with labels (`name{label="v"}`); None while it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def totals(samples: dict[str, float]) -> dict[str, float]:
    """Samples summed over their labels, by metric name."""
    summed: dict[str, float] = {}
    for name, value in samples.items():
        bare = name.partition("{")[0]
        summed[bare] = summed.get(bare, 0.0) + value
    return summed
