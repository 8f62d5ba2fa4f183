"""The ``fashn-async`` command line: batch, run, emulator, demo.

click parses the arguments and rich draws the progress display; both come with the
``cli`` extra. Exit codes: 0 all done, 1 some failed (or are uncertain, or still to do;
``run``: the prediction started and failed or ran out of time), 2 could not start (or,
``batch``, a disk problem stopped it), 130 stopped by Ctrl-C (``batch``: run it again to
resume).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

try:
    import click
    import rich.console  # noqa: F401 - the cli extra is checked here, used in _cli_run
except ImportError:  # pragma: no cover - depends on the install
    sys.exit("the fashn-async command line needs its extra: pip install 'fashn-async[cli]'")

from fashn_async import AsyncFashn, Rate
from fashn_async._cli_params import (
    Finite,
    RateType,
    api_options,
    folder_problem,
    run_exit_code,
)
from fashn_async._cli_run import batch_command, console, say
from fashn_async._emulator_clock import learn_time_scale, scaled_timing
from fashn_async._images import is_given_url
from fashn_async._validators import visible
from fashn_async.bulk._command import (
    EXIT_CANNOT_START,
    STOPPED_STARTING,
    BatchSettings,
    fresh_start,
    run_batch,
)
from fashn_async.bulk._outcome import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    LONGEST_LATENCY,
    SERVER_ACTS_WITHIN,
    JobOptions,
)
from fashn_async.bulk._signals import stopped_by_signals
from fashn_async.errors import (
    ConfigurationError,
    FashnError,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="fashn-async")
def main() -> None:
    """fashn-async: virtual try-on at the API's limits, safely."""


@main.command(short_help="Run a whole catalog of try-ons, resumably.")
@click.argument("catalog", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for outputs, manifest.jsonl, report.html and the job's journal.",
)
@api_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check every row, list the bad ones on stdout; send and write nothing. Exit 0: every "
    "row valid, 1: some bad (a row that cannot be read, not UTF-8 say, is one bad row), 2: "
    "the catalog cannot be read at all.",
)
@click.option(
    "--in-flight", type=click.IntRange(1, 10_000), default=6, show_default=True,
    help="Predictions running at once (the API's concurrency limit).",
)  # fmt: skip
@click.option(
    "--submit-rate", type=RateType(), default="25/60", show_default=True,
    help="Generations submitted per window of SECONDS, or off.",
)  # fmt: skip
@click.option(
    "--status-rate", type=RateType(), default="50/10", show_default=True,
    help="Status calls per window of SECONDS, or off.",
)  # fmt: skip
@click.option(
    "--model-name",
    default=None,
    help="Send {model_name, inputs} for this model (e.g. tryon-v1.6), the row's columns as "
    "inputs, instead of the flat v1 body.",
)
@click.option(
    "--output-format",
    type=click.Choice(["png", "jpeg"]),
    default=None,
    help="Output image format of rows that set none (needs --model-name).",
)
@click.option(
    "--prepare-images/--as-is",
    default=True,
    show_default=True,
    help="Resize image files to a longest edge of 2000 px, apply their EXIF orientation and "
    "re-encode them (JPEG q95, PNG where transparent) before sending, as the API advises; "
    "--as-is sends the files' bytes (a request over 16 MiB is then a bad row).",
)
@click.option(
    "--downloads", type=click.IntRange(1, 64), default=8, show_default=True,
    help="Output images downloaded at once.",
)  # fmt: skip
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Send uncertain rows again (their first POST may have landed: may be charged twice).",
)
@click.option("--retry-failed", is_flag=True, help="Send failed rows again.")
@click.option(
    "--leave-running",
    is_flag=True,
    help="On Ctrl-C, leave running predictions running (a re-run collects them) "
    "instead of canceling them.",
)
@click.option(
    "--progress",
    type=click.Choice(["auto", "bar", "lines", "quiet"]),
    default="auto",
    show_default=True,
    help="A live bar, log lines, or nothing; auto: a bar on a terminal, else lines.",
)
@click.option(
    "--log-interval",
    type=Finite(0.0, 3600.0),
    default=10.0,
    show_default=True,
    help="Log-line display: a progress line when the counts change, at most one per this "
    "many seconds, and one at the end.",
)
@click.option("--no-report", is_flag=True, help="Do not write report.html.")
@click.option(
    "--time-scale",
    type=Finite(0.0001, 1.0),
    default=None,
    help="For an emulator started with this --time-scale: scales limits and polling; "
    "rates are shown in API time. Default: an emulator's own, read from it, else 1.",
)
def batch(
    catalog: Path,
    out: Path,
    api_key: str | None,
    base_url: str,
    dry_run: bool,
    in_flight: int,
    submit_rate: Rate | None,
    status_rate: Rate | None,
    model_name: str | None,
    output_format: str | None,
    prepare_images: bool,
    downloads: int,
    resend_uncertain: bool,
    retry_failed: bool,
    leave_running: bool,
    progress: Any,
    log_interval: float,
    no_report: bool,
    time_scale: float,
) -> None:
    """Run every try-on of CATALOG (CSV, TSV or JSONL), resumably, into --out.

    Columns: model_image, garment_image, category, any option of the v1 request, and an
    optional id. Image paths are relative to the catalog. Re-running the same command
    resumes: done rows are skipped, submitted ones collected, never paid twice.
    """
    if output_format is not None and model_name is None:
        raise click.UsageError(
            "--output-format needs --model-name (e.g. tryon-v1.6): the v1 body has no "
            "output_format field"
        )
    with stopped_by_signals():
        try:
            # The options by name, as click read them: one list of them, the signature's.
            code = batch_command(**click.get_current_context().params)
        except KeyboardInterrupt:  # SIGINT or SIGTERM before the job's own handlers
            console.print(STOPPED_STARTING, markup=False, highlight=False)
            code = EXIT_INTERRUPTED
    sys.exit(code)


@main.command(short_help="A sample catalog on the embedded emulator.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the sample catalog, the outputs, manifest.jsonl and report.html.",
)
@click.option(
    "--count",
    type=click.IntRange(1, 200),
    default=12,
    show_default=True,
    help="Rows in the sample catalog.",
)
@click.option(
    "--time-scale",
    type=Finite(0.001, 1.0),
    default=0.02,
    show_default=True,
    help="Emulator time factor: 0.02 runs an API minute in 1.2 s.",
)
@click.option(
    "--progress", type=click.Choice(["auto", "bar", "lines", "quiet"]), default="auto",
    show_default=True,
    help="A live bar, log lines, or nothing; auto: a bar on a terminal, else lines.",
)  # fmt: skip
def demo(out: Path, count: int, time_scale: float, progress: Any) -> None:
    """A sample catalog through the whole bulk path, on the embedded emulator.

    No key, no network: the emulator runs on 127.0.0.1 inside this process.
    """
    try:
        from fashn_async.bulk._sample import write_sample_catalog
        from fashn_async.testing import Emulator, EmulatorConfig
    except ImportError as exc:
        console.print(f"[red]the demo needs the cli extra: pip install 'fashn-async[cli]' ({exc})")
        sys.exit(EXIT_CANNOT_START)

    sample = out / "inputs" / "catalog.csv"
    try:
        fresh_start(out, sample)  # the emulator is new each time: so is the job
    except ConfigurationError as error:
        console.print(f"cannot start: {error.message}", markup=False)
        sys.exit(EXIT_CANNOT_START)

    async def go() -> int:
        catalog = write_sample_catalog(out / "inputs", count)
        timing = scaled_timing(time_scale)
        async with Emulator(EmulatorConfig(time_scale=time_scale)) as emu:
            console.print(
                f"emulator at {emu.url} (time x{1 / time_scale:g}); {count} try-ons from "
                f"{catalog} -> {out}/"
            )
            code = await run_batch(
                BatchSettings(
                    catalog=catalog,
                    options=JobOptions(
                        out=out,
                        longest_latency=timing.seconds(LONGEST_LATENCY),
                        server_acts_within=timing.seconds(SERVER_ACTS_WITHIN),
                    ),
                    api_key=emu.api_key,
                    base_url=emu.url,
                    limits=timing.limits,
                    polling=timing.polling,
                    retry=timing.retry,
                    display=progress,
                    time_scale=time_scale,
                    trust_env=False,  # the emulator is here, on loopback: no proxy reaches it
                ),
                console,
            )
            report = emu.report()
            console.print(
                f"the emulator saw {len(report.accepted)} submissions, "
                f"{sum(report.rejected.values())} 429s, {report.duplicates} duplicates"
            )
        return code

    with stopped_by_signals():
        try:
            code = asyncio.run(go())
        except KeyboardInterrupt:  # SIGINT or SIGTERM before the job's own handlers
            console.print(STOPPED_STARTING, markup=False, highlight=False)
            code = EXIT_INTERRUPTED
    sys.exit(code)


@main.command(short_help="Serve the API emulator.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="0 picks a free port.")
@click.option(
    "--api-key",
    "key",
    default="fashn-test-key",
    show_default=True,
    help="The key the emulator accepts.",
)
@click.option(
    "--time-scale", type=Finite(0.0001, 100.0), default=1.0, show_default=True,
    help="Multiplies every duration (latency, windows, Retry-After): 0.01 runs an API "
    "minute in 0.6 s.",
)  # fmt: skip
@click.option(
    "--latency", default=None,
    help="Prediction latency range LOW,HIGH in seconds, for every model and mode. "
    "Default: each model's and mode's documented latency (NOTES.md), as EmulatorConfig's.",
)  # fmt: skip
@click.option("--no-limits", is_flag=True, help="Switch every rate and concurrency limit off.")
@click.option(
    "--seed", type=int, default=0, show_default=True,
    help="Seed of every random draw: runs repeat exactly.",
)  # fmt: skip
def emulator(
    host: str,
    port: int,
    key: str,
    time_scale: float,
    latency: str | None,
    no_limits: bool,
    seed: int,
) -> None:
    """Serve the FASHN API emulator (for tests, benchmarks and demos)."""
    from fashn_async.testing import EmulatorConfig, serve

    kwargs: dict[str, Any] = {"api_key": key, "time_scale": time_scale, "seed": seed}
    if latency is not None:
        try:
            low, high = (float(v) for v in latency.split(","))
        except ValueError:
            raise click.BadParameter("expected LOW,HIGH seconds", param_hint="--latency") from None
        kwargs["latency"] = (low, high)
    if no_limits:
        kwargs.update(
            submit_limit=None, status_limit=None, credits_limit=None, in_flight_limit=None
        )
    try:
        serve(EmulatorConfig(**kwargs), host=host, port=port)
    except OSError as exc:  # the port taken, say: one line, as the other commands
        console.print(f"cannot start: cannot listen on {host}:{port}: {exc.strerror or exc}",
                      markup=False, highlight=False)  # fmt: skip
        sys.exit(EXIT_CANNOT_START)


@main.command(short_help="Run one try-on and save its outputs.")
@click.option("--model", "model_image", required=True, help="Model image: path or URL.")
@click.option("--garment", "garment_image", required=True, help="Garment image: path or URL.")
@click.option(
    "--category", type=click.Choice(["tops", "bottoms", "one-pieces"]), required=True,
    help="The garment's category.",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("."), show_default=True,
    help="Folder the output images are saved in (made if missing; checked writable before "
    "anything is sent).",
)  # fmt: skip
@api_options
@click.option(
    "--deadline",
    type=Finite(min=0.0, min_open=True),
    default=None,
    help="Give up (and cancel it on the server) after this many seconds.",
)
@click.option(
    "--time-scale",
    type=Finite(0.0001, 1.0),
    default=None,
    help="For an emulator started with this --time-scale: scales limits and polling. "
    "Default: an emulator's own, read from it, else 1.",
)
def run(
    model_image: str,
    garment_image: str,
    category: str,
    out: Path,
    api_key: str | None,
    base_url: str,
    deadline: float | None,
    time_scale: float,
) -> None:
    """Run one try-on and save its outputs; their paths are printed on stdout."""

    def image(value: str) -> Any:
        return value if is_given_url(value) else Path(value)

    problem = folder_problem(out)
    if problem is not None:  # known before anything is sent (and charged)
        console.print(f"cannot start: {problem}",
                      markup=False, highlight=False)  # fmt: skip
        sys.exit(EXIT_CANNOT_START)

    async def go() -> int:
        async with AsyncFashn(
            api_key=api_key, base_url=base_url, **scaled_timing(time_scale).client_options()
        ) as client:
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
        with stopped_by_signals():  # SIGTERM as SIGINT: exit 130, not 143
            if time_scale is None:
                time_scale = learn_time_scale(base_url, api_key, say)
            code = asyncio.run(go())
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except FashnError as error:
        code = run_exit_code(error)
        text = error.message if isinstance(error, ConfigurationError) else str(error)
        if "no API key" in text:
            text = "no API key: pass --api-key or set the FASHN_API_KEY environment variable"
        prefix = "cannot start" if code == EXIT_CANNOT_START else type(error).__name__
        console.print(visible(f"{prefix}: {text}"), markup=False, highlight=False)
    sys.exit(code)


__all__ = ["main"]
