"""`zoo serve` started on a free 127.0.0.1 port for a benchmark script, and stopped after it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Iterator


@contextlib.contextmanager
def local_server(*args: str, start_timeout: float = 180) -> Iterator[tuple[subprocess.Popen, str]]:
    """Yield (process, base URL) of ``zoo serve ARGS`` once /health answers; SIGINT it afterwards."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", "--port", str(port), *args], env=os.environ)
    try:
        deadline = time.time() + start_timeout
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("zoo serve did not start")
                time.sleep(0.2)
        yield server, url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
