"""Run ``python -m modelscope_paraformer serve`` as a child process on a free port (tests, benchmarks)."""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Optional, Sequence, Union

from ..core.errors import ParaformerError


class LaunchError(ParaformerError):
    """The server process did not come up."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_health(port: int, tls: bool = False, timeout: float = 5.0) -> dict:
    """``GET /health`` of a server on 127.0.0.1."""
    context = ssl._create_unverified_context() if tls else None  # noqa: S323 (a self-signed test certificate)
    scheme = "https" if tls else "http"
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/health", timeout=timeout, context=context) as reply:
        return json.loads(reply.read())


class ServerProcess:
    """A server child process; a context manager that stops it (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, args: Sequence[str] = (), log: Optional[Union[str, Path]] = None, port: Optional[int] = None,
                 tls: bool = False, start_timeout: float = 120.0, env: Optional[dict] = None):
        self.port = port or free_port()
        self.tls = tls
        self.log_path = Path(log) if log else None
        command = [sys.executable, "-m", "modelscope_paraformer", "serve", "--port", str(self.port), *args]
        self._log: Optional[IO] = open(self.log_path, "w") if self.log_path else None
        environment = dict(os.environ, **(env or {}))
        self.process = subprocess.Popen(command, stdout=self._log or subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT, env=environment)
        self._wait(start_timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LaunchError(f"the server exited with {self.process.returncode}: {self.log_text()[-2000:]}")
            try:
                get_health(self.port, self.tls, timeout=1.0)
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise LaunchError(f"the server did not answer /health within {timeout:.0f} s")

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def health(self) -> dict:
        return get_health(self.port, self.tls)

    def log_text(self) -> str:
        if self._log:
            self._log.flush()
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
