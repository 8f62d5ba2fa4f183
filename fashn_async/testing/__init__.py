"""An emulator of the FASHN API, for tests and demos: ``fashn_async.testing``.

It is a second, independent reading of the API reference (it shares nothing with the
client but the names in ``fashn_async._names``), served by aiohttp on a loopback port:
the same routes, bodies, limits (rolling windows, in-flight cap, credits) and errors as
the real API, real PNG/JPEG outputs, seeded faults, and a report of all it saw.

Example::

    from fashn_async.testing import Emulator, EmulatorConfig

    async with Emulator(EmulatorConfig(time_scale=0.01)) as emu:
        async with emu.client() as client:  # limits and polling on the emulator's clock
            await client.run(
                model_image=emu.sample_image_url("model"),
                garment_image=emu.sample_image_url("garment"),
                category="tops",
            )
        assert emu.report().max_submissions_in_window <= 25

In pytest, the plugin (``fashn_async.testing.plugin``, registered on install) gives the
fixtures ``fashn_emulator`` and ``fashn_client``; see its docstring for the one line of
setup each async test runner needs.

Needs Pillow: ``pip install 'fashn-async[emulator]'``. The names below are imported on
first use, so the pytest plugin (``fashn_async.testing.plugin``) loads without Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import EmulatorConfig, HttpFault, Latency, PredictionFault, WindowLimit
    from ._emulator import Emulator, client_timing, serve
    from ._faults import StalledPort
    from ._images import sample_image
    from ._report import AcceptedSubmission, EmulatorReport, WebhookAttempt

__all__ = [
    "AcceptedSubmission",
    "Emulator",
    "EmulatorConfig",
    "EmulatorReport",
    "HttpFault",
    "Latency",
    "PredictionFault",
    "StalledPort",
    "WebhookAttempt",
    "WindowLimit",
    "client_timing",
    "sample_image",
    "serve",
]

_HOMES = {
    "AcceptedSubmission": "._report",
    "Emulator": "._emulator",
    "EmulatorConfig": "._config",
    "EmulatorReport": "._report",
    "HttpFault": "._config",
    "Latency": "._config",
    "PredictionFault": "._config",
    "StalledPort": "._faults",
    "WebhookAttempt": "._report",
    "WindowLimit": "._config",
    "client_timing": "._emulator",
    "sample_image": "._images",
    "serve": "._emulator",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(home, __name__)
    except ModuleNotFoundError as exc:
        if exc.name != "PIL":
            raise
        raise ImportError(
            "fashn_async.testing needs Pillow: pip install 'fashn-async[emulator]'"
        ) from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
