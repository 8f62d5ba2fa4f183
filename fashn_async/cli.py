"""The ``fashn-async`` command line: demo, emulator, run.

click parses the arguments and rich draws tables and progress; both come with the
``cli`` extra.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

try:
    import click
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover - depends on the install
    sys.exit("the fashn-async command line needs its extra: pip install 'fashn-async[cli]'")

from fashn_async import AsyncFashn, Limits, Polling, TryOnRequest
from fashn_async.errors import FashnError

EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_START = 0, 1, 2

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fashn-async")
def main() -> None:
    """fashn-async: virtual try-on at the API's limits, safely."""


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder the try-on images are written to.",
)
@click.option(
    "--count",
    type=click.IntRange(1, 200),
    default=8,
    show_default=True,
    help="How many try-ons to run.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(0.001, 1.0),
    default=0.02,
    show_default=True,
    help="Emulator time factor: 0.02 runs an API minute in 1.2 s.",
)
def demo(out: Path, count: int, time_scale: float) -> None:
    """Run a batch of try-ons against the embedded emulator; no key, no network."""
    try:
        from fashn_async.testing import Emulator, EmulatorConfig
    except ImportError as exc:
        console.print(
            f"[red]the demo needs the emulator extra: pip install 'fashn-async[cli]' ({exc})"
        )
        sys.exit(EXIT_CANNOT_START)
    code = asyncio.run(_demo(out, count, time_scale, Emulator, EmulatorConfig))
    sys.exit(code)


async def _demo(out: Path, count: int, scale: float, emulator_cls: Any, config_cls: Any) -> int:
    from fashn_async.testing import sample_image

    inputs = Path(tempfile.mkdtemp(prefix="fashn-demo-"))
    categories: tuple[Literal["tops", "bottoms", "one-pieces"], ...] = (
        "tops",
        "bottoms",
        "one-pieces",
    )
    requests = []
    for i in range(count):
        model, garment = inputs / f"model_{i}.png", inputs / f"garment_{i}.png"
        model.write_bytes(sample_image("model", seed=i))
        garment.write_bytes(sample_image("garment", seed=100 + i))
        requests.append(
            TryOnRequest(model_image=model, garment_image=garment, category=categories[i % 3])
        )
    async with (
        emulator_cls(config_cls(time_scale=scale)) as emu,
        AsyncFashn(
            api_key=emu.api_key,
            base_url=emu.url,
            limits=Limits().scaled(scale),
            polling=Polling().scaled(scale),
        ) as client,
    ):
        console.print(f"emulator at {emu.url} (time x{1 / scale:g}); {count} try-ons -> {out}/")
        table = Table("#", "prediction", "status", "files")
        failed = 0
        batch = client.batch(requests)
        async for result in batch:
            if result.ok:
                paths = await result.save(out, stem=f"tryon_{result.index:03d}")
                table.add_row(
                    str(result.index),
                    result.prediction_id,
                    "completed",
                    ", ".join(p.name for p in paths),
                )
            else:
                failed += 1
                table.add_row(
                    str(result.index), result.prediction_id or "-", f"[red]{result.error}", ""
                )
        console.print(table)
        report = emu.report()
        console.print(
            f"{batch.progress.done} done, {batch.progress.failed} failed; the emulator saw "
            f"{len(report.accepted)} submissions, {sum(report.rejected.values())} 429s; "
            f"outputs in {out}/"
        )
    return EXIT_SOME_FAILED if failed else EXIT_OK


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--api-key", default="fashn-test-key", show_default=True, help="The key the emulator accepts."
)
@click.option("--time-scale", type=click.FloatRange(0.0001, 100.0), default=1.0, show_default=True)
@click.option("--latency", default="5,11", show_default=True, help="Prediction latency range, s.")
@click.option("--no-limits", is_flag=True, help="Switch every rate and concurrency limit off.")
@click.option("--seed", type=int, default=0, show_default=True)
def emulator(
    host: str, port: int, api_key: str, time_scale: float, latency: str, no_limits: bool, seed: int
) -> None:
    """Serve the FASHN API emulator (for tests, benchmarks and demos)."""
    from fashn_async.testing import EmulatorConfig, serve

    try:
        low, high = (float(v) for v in latency.split(","))
    except ValueError:
        raise click.BadParameter("expected LOW,HIGH seconds", param_hint="--latency") from None
    kwargs: dict[str, Any] = {
        "api_key": api_key,
        "time_scale": time_scale,
        "latency": (low, high),
        "seed": seed,
    }
    if no_limits:
        kwargs.update(
            submit_limit=None, status_limit=None, credits_limit=None, in_flight_limit=None
        )
    serve(EmulatorConfig(**kwargs), host=host, port=port)


@main.command()
@click.option("--model", "model_image", required=True, help="Model image: path or URL.")
@click.option("--garment", "garment_image", required=True, help="Garment image: path or URL.")
@click.option("--category", type=click.Choice(["tops", "bottoms", "one-pieces"]), required=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option(
    "--base-url", envvar="FASHN_BASE_URL", default="https://api.fashn.ai", show_default=True
)
@click.option(
    "--deadline", type=float, default=None, help="Give up (and cancel) after this many s."
)
def run(
    model_image: str,
    garment_image: str,
    category: str,
    out: Path,
    base_url: str,
    deadline: float | None,
) -> None:
    """Run one try-on and save its outputs (key from FASHN_API_KEY)."""

    def image(value: str) -> Any:
        return value if value.startswith(("http://", "https://", "data:")) else Path(value)

    async def go() -> int:
        async with AsyncFashn(base_url=base_url) as client:
            result = await client.run(
                model_image=image(model_image),
                garment_image=image(garment_image),
                category=category,
                deadline=deadline,
            )
            for path in await result.save(out):
                click.echo(path)
        return EXIT_OK

    try:
        sys.exit(asyncio.run(go()))
    except FashnError as error:
        console.print(f"[red]{type(error).__name__}: {error}")
        sys.exit(EXIT_SOME_FAILED if error.prediction_id else EXIT_CANNOT_START)


__all__ = ["main"]
