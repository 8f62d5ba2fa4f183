"""A real forward proxy for the tests: one tinyproxy process on loopback.

tinyproxy is the Debian package (``.ci/run`` installs it); missing, a test using it skips
with the install command, or fails in CI (``helpers.system_program``).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import free_port, stop_process, system_program


class Tinyproxy:
    """One tinyproxy process on 127.0.0.1, foreground, logging to a file."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / "tinyproxy.log"
        self.config = directory / "tinyproxy.conf"
        self.config.write_text(
            f"Port {self.port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n"
            f'LogFile "{self.log}"\nLogLevel Connect\nMaxClients 50\n'
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        binary = system_program("tinyproxy", "tinyproxy")
        self.process = subprocess.Popen(  # noqa: S603 - the system's tinyproxy, fixed args
            [binary, "-d", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"tinyproxy did not start on port {self.port}")
                time.sleep(0.02)
            else:
                return

    def stop(self) -> None:
        """Stop it and wait for it to exit."""
        process, self.process = self.process, None
        stop_process(process)

    def forwarded(self, path: str) -> int:
        """How many requests for ``path`` it forwarded, by its log."""
        if not self.log.exists():
            return 0
        lines = self.log.read_text(errors="replace").splitlines()
        return sum(1 for line in lines if "Request (" in line and path in line)
