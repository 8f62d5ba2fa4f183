"""An emulator of the FASHN API, for tests and demos: ``fashn_async.testing``.

It is a second, independent reading of the API reference (it shares nothing with the
client but the names in ``fashn_async._names``), served by aiohttp on a loopback port:
the same routes, bodies, limits (rolling windows, in-flight cap, credits) and errors as
the real API, real PNG/JPEG outputs, seeded faults, and a report of all it saw.

Example::

    from fashn_async.testing import Emulator, EmulatorConfig

    async with Emulator(EmulatorConfig(time_scale=0.01)) as emu:
        ...  # send requests to emu.url with "Authorization: Bearer " + emu.api_key
        assert emu.report().max_submissions_in_window <= 25

Needs Pillow: ``pip install 'fashn-async[emulator]'``.
"""

from __future__ import annotations

try:
    import PIL  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "fashn_async.testing needs Pillow: pip install 'fashn-async[emulator]'"
    ) from exc

from ._config import EmulatorConfig, HttpFault, PredictionFault, WindowLimit
from ._emulator import Emulator, serve
from ._images import sample_image
from ._report import AcceptedSubmission, EmulatorReport, WebhookAttempt

__all__ = [
    "AcceptedSubmission",
    "Emulator",
    "EmulatorConfig",
    "EmulatorReport",
    "HttpFault",
    "PredictionFault",
    "WebhookAttempt",
    "WindowLimit",
    "sample_image",
    "serve",
]
