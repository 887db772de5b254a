"""The AWS stand-in: moto in server mode (real HTTP on 127.0.0.1) for S3, CloudWatch Logs, SNS, SQS and KMS."""

from __future__ import annotations

import importlib.util
import sys
import time
import urllib.request
from pathlib import Path

from kafkatrail.stack.processes import StackError, is_running, start_detached, tail

MODULE = "moto.server"


def start_aws_standin(port: int, log_file: Path) -> int:
    """Start moto_server on 127.0.0.1:port; returns its PID."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise StackError("moto's server is not installed; install it with: pip install 'kafkatrail[local]'")
    return start_detached([sys.executable, "-m", MODULE, "-H", "127.0.0.1", "-p", str(port)], log_file)


def is_our_standin(port: int, argv: list[str]) -> bool:
    """True if argv is a moto server listening on this port."""
    return MODULE in argv and "-p" in argv and argv[argv.index("-p") + 1 : argv.index("-p") + 2] == [str(port)]


def wait_until_ready(pid: int, port: int, log_file: Path, timeout_s: float) -> None:
    """Poll moto's own API until it answers over HTTP; raise if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}/moto-api/"
    while time.monotonic() < deadline:
        if not is_running(pid):
            raise StackError(f"the AWS stand-in (moto) exited while starting: {tail(log_file, 2)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise StackError(f"the AWS stand-in did not answer on {url} within {timeout_s:.0f} s (log: {log_file})")
