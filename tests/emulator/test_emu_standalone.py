"""serve(): the standalone emulator process, stopped by SIGTERM or SIGINT."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from typing import Any

import pytest
import yarl

SERVE = (
    "from fashn_async.testing import EmulatorConfig, serve\n"
    "serve(EmulatorConfig(api_key='standalone-key'), host='127.0.0.1', port=0)\n"
)


def _call(url: yarl.URL, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(url.host or "", url.port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {"Authorization": "Bearer standalone-key", "Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_until_signal(stop: signal.Signals) -> None:
    """serve() prints its URL and key, answers the API and control routes, stops on a signal."""
    with subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", SERVE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            first = process.stdout.readline()
            assert first.startswith("FASHN API emulator listening on http://127.0.0.1:")
            assert "standalone-key" in process.stdout.readline()
            url = yarl.URL(first.split()[-1])
            assert _call(url, "GET", "/v1/credits")[0] == 200
            fault = {"type": "http", "kind": "error_5xx", "route": "credits", "times": 1}
            assert _call(url, "POST", "/_emulator/faults", fault) == (200, {"added": 1})
            assert _call(url, "GET", "/v1/credits")[0] == 500
            status, report = _call(url, "GET", "/_emulator/report")
            assert (status, report["errors_5xx"]) == (200, 1)
            assert _call(url, "POST", "/_emulator/reset") == (200, {"faults": 0})
            process.send_signal(stop)
            assert process.wait(timeout=30) == 0
            assert "stopped" in process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
