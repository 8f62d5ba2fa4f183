"""What every benchmark script shares: processes, the machine, tables, JSON results.

The emulator runs in one process (``_emulator_proc.py``), each client under test in
another (``_client_proc.py``); this process only starts them and reads the results. The
API key is a random one per run, handed to both through the environment: it never
appears on a command line, in the output or in the results.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import secrets
import selectors
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
_KEY_ENV = "FASHN_API_KEY"
# Proxies must never see loopback traffic (and nothing here goes elsewhere).
_DROP_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_KEY = secrets.token_urlsafe(24)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env[_KEY_ENV] = _KEY
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONHASHSEED"] = "0"
    return env


def tiny_png(width: int = 16, height: int = 16) -> bytes:
    """A valid ``width`` x ``height`` grey PNG, made without Pillow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([128, 128, 128]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def client_spec(client: str, url: str, n: int, **fields: Any) -> dict[str, Any]:
    """What ``_client_proc.py`` runs: ``n`` try-ons of the tiny image by ``client``."""
    image = tiny_data_uri()
    return {
        "client": client,
        "url": url,
        "n": n,
        "model_image": image,
        "garment_image": image,
        **fields,
    }


def tiny_data_uri() -> str:
    """The input image of every benchmark: a 16x16 PNG as a data URI (about 100 bytes).

    Both SDKs send it as is; the emulator reads it without fetching anything and draws
    16x16 outputs, so its own CPU stays small next to the clients'.
    """
    return "data:image/png;base64," + base64.b64encode(tiny_png()).decode("ascii")


# -- the machine -----------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """What the figures were measured on; the load average is taken now, at the start."""
    import psutil

    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": {
            name: _version(name) for name in ("fashn-async", "fashn", "aiohttp", "httpx", "anyio")
        },
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def describe(info: dict[str, Any]) -> str:
    """The machine in two lines, for the top of a table."""
    load = ", ".join(f"{x:.2f}" for x in info["load_avg_at_start"])
    return (
        f"Machine: {info['cpu']}, {info['usable_cpus']}/{info['logical_cpus']} CPUs usable, "
        f"{info['memory_gb']} GB; {info['python']}; load average at start {load}\n"
        f"fashn-async {info['packages']['fashn-async']}, official fashn "
        f"{info['packages']['fashn']}, aiohttp {info['packages']['aiohttp']}, "
        f"httpx {info['packages']['httpx']}"
    )


# -- processes -------------------------------------------------------------------------


class EmulatorProcess:
    """A running ``_emulator_proc.py``; read its report, stop it on exit."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def _get(self, path: str, method: str = "GET") -> Any:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            connection.request(method, path, headers={"Authorization": f"Bearer {_KEY}"})
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"emulator answered {response.status} to {path}")
            return json.loads(body)
        finally:
            connection.close()

    def report(self) -> dict[str, Any]:
        """The emulator's report (``GET /_emulator/report``), times in API seconds."""
        return self._get("/_emulator/report")  # type: ignore[no-any-return]

    def cpu_seconds(self) -> float:
        """CPU seconds the emulator process has used so far."""
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


@contextlib.contextmanager
def emulator(
    config: dict[str, Any], *, start_timeout: float = 30.0, niceness: int = 0
) -> Iterator[EmulatorProcess]:
    """Start a fresh emulator process with ``config``; stop it when the block ends.

    A fresh one per measured run: windows, latency draws and the report start from zero,
    so every client meets the same seeded latencies in the same order. ``niceness`` (0-19)
    lowers its scheduling priority: a server that runs on its own machine in real use then
    takes only the CPU the client leaves, instead of time slices the client's loop waits
    behind.
    """
    command = [
        sys.executable,
        str(HERE / "_emulator_proc.py"),
        "--port",
        "0",
        "--config-json",
        json.dumps(config),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
    )
    try:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=start_timeout):
            raise RuntimeError("the emulator did not start in time")
        line = process.stdout.readline()
        if not line:
            _, err = process.communicate(timeout=5)
            raise RuntimeError(f"the emulator exited: {err.strip()[-2000:]}")
        yield EmulatorProcess(process, json.loads(line)["url"])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def run_client(spec: dict[str, Any], *, timeout: float = 900.0) -> dict[str, Any]:
    """Run ``_client_proc.py`` with ``spec``; return its measurements."""
    command = [sys.executable, str(HERE / "_client_proc.py"), json.dumps(spec)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=_child_env(), timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"client {spec['client']} failed ({done.returncode}): {done.stderr.strip()[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- options, tables, results ----------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    """The options every script takes."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--quick", action="store_true", help="smaller N: a smoke run")
    result.add_argument(
        "--results", type=Path, default=RESULTS, help="directory for the JSON results"
    )
    result.add_argument(
        "--profile", action="store_true", help="also profile our client (pyinstrument)"
    )
    return result


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` significant places, NaN and None as a dash."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(met: bool, text: str) -> str:
    """One goal's line in a report: ``MET`` or ``MISSED``, then what was measured."""
    return f"{'MET   ' if met else 'MISSED'} {text}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (it reads in a terminal and pastes into the README)."""
    cells = [[fmt(cell) for cell in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] in ("", None) for row in rows)
        for i in range(len(headers))
    ]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in cells:
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("| " + " | ".join(padded) + " |")
    return "\n".join(lines)


def save(
    results_dir: Path, name: str, payload: dict[str, Any], started: float
) -> tuple[Path, float]:
    """Write ``<results_dir>/<name>.json``; return its path and the seconds the run took."""
    elapsed = time.monotonic() - started
    payload = {"benchmark": name, "duration_s": round(elapsed, 1), **payload}
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path, elapsed


def report(
    results_dir: Path,
    name: str,
    *,
    info: dict[str, Any],
    goal: str,
    runs: list[dict[str, Any]],
    text: str,
    verdicts: list[str],
    started: float,
    **extra: Any,
) -> None:
    """Print the machine, the table and the verdicts; write them all to ``<name>.json``."""
    print(describe(info))
    print(text)
    print("\n".join(verdicts))
    payload = {"command": command_line(), "machine": info, **extra, "goal": goal}
    payload |= {"runs": runs, "goals": verdicts, "table": text}
    path, elapsed = save(results_dir, name, payload, started)
    print(f"wrote {path} ({elapsed:.0f} s)")


def command_line() -> str:
    """How this script was started, for the record."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        script = script.resolve().relative_to(HERE.parent)
    return " ".join(["python", str(script), *sys.argv[1:]])


#: Every emulator of a run draws its latencies from this seed: same draws for every client.
SEED = 2024
#: The API's documented limits, as (limit, API seconds).
SUBMIT = (25, 60.0)
STATUS = (50, 10.0)
IN_FLIGHT = 6


def emulator_config(
    *,
    scale: float,
    latency: Sequence[Any] = (5.0, 11.0),
    limits: bool = True,
    in_flight: int | None = IN_FLIGHT,
    seed: int = SEED,
) -> dict[str, Any]:
    """An emulator config: the API's limits (or none), tryon-v1.6 latencies by default."""
    return {
        "time_scale": scale,
        "latency": list(latency),
        "submit_limit": list(SUBMIT) if limits else None,
        "status_limit": list(STATUS) if limits else None,
        "credits_limit": None,
        "in_flight_limit": in_flight if limits else None,
        "seed": seed,
    }


#: Our client polls at once on an emulator that answers at once (a zero-latency prior).
IMMEDIATE_POLLING = {"prior": [0.001, 0.002], "target_lag": 0.001}
