"""The emulator in a process of its own, for benchmarks.

    FASHN_API_KEY=... python benchmarks/_emulator_proc.py --port 0 --config-json '{...}'

The config JSON holds ``EmulatorConfig`` fields; windows are ``[limit, period]`` pairs or
null; faults are objects as ``POST /_emulator/faults`` takes them. The key comes from the
environment, never the command line, and is never printed: the one line written to stdout
is ``{"url": ...}``, once the port is open. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from fashn_async.testing import Emulator, EmulatorConfig, WindowLimit
from fashn_async.testing._faults import fault_from_json

_WINDOWS = ("submit_limit", "status_limit", "credits_limit")


def config_from_json(data: dict[str, Any], api_key: str) -> EmulatorConfig:
    """Build the config; ``[limit, period]`` pairs become WindowLimits."""
    fields = dict(data)
    for name in _WINDOWS:
        if fields.get(name) is not None:
            limit, period = fields[name]
            fields[name] = WindowLimit(int(limit), float(period))
    if isinstance(fields.get("latency"), list):  # (low, high) or [[low, high, weight], ...]
        fields["latency"] = tuple(fields["latency"])
    if "faults" in fields:  # {"type": "http" | "prediction", ...} objects
        fields["faults"] = tuple(fault_from_json(fault) for fault in fields["faults"])
    return EmulatorConfig(api_key=api_key, **fields)


async def _serve(config: EmulatorConfig, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Emulator(config, host=host, port=port) as emulator:
        print(json.dumps({"url": emulator.url}), flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config-json", default="{}")
    args = parser.parse_args()
    api_key = os.environ.get("FASHN_API_KEY")
    if not api_key:
        sys.exit("set FASHN_API_KEY: the key the emulator accepts")
    config = config_from_json(json.loads(args.config_json), api_key)
    asyncio.run(_serve(config, args.host, args.port))


if __name__ == "__main__":
    main()
