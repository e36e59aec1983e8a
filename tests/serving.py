"""A real `zoo serve` process on 127.0.0.1 for the HTTP tests, and small helpers around it."""

import signal
import socket
import subprocess
import sys
import time

import httpx

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home: str, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo", "--home", home, "serve", "--port", str(self.port),
                                      "--log-level", "warning", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zoo serve exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("zoo serve did not come up in 120 s")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


def wait_for(server: Server, job: dict, timeout: float = 180) -> dict:
    """Poll a job until it is no longer queued or running."""
    deadline = time.time() + timeout
    while job["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.3)
        job = httpx.get(server.url + f"/v1/zoo/jobs/{job['id']}", headers=AUTH).json()
    return job
