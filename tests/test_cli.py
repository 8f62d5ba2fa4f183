"""The command line: exit codes, dry runs, one try-on, the demo (real processes)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from fashn_async import AsyncFashn, errors
from fashn_async._cli_params import run_exit_code
from fashn_async.bulk import Journal, load_catalog
from fashn_async.bulk._command import STOPPED_STARTING
from fashn_async.cli import main
from tests.bulk_support import (
    KEY,
    cli,
    cli_env,
    control,
    journal_counts,
    read_manifest,
    run_cli,
    standalone_emulator,
    write_catalog,
)
from tests.helpers import free_port

#: An API key of the shortest accepted length's kind (12 or more characters).
K12 = "test-key-0123"

pytestmark = pytest.mark.looptime(False)  # real processes, real time


@pytest.fixture(scope="module")
def emulator_url() -> object:
    """One standalone emulator (time x100) for the module's tests."""
    with standalone_emulator("--time-scale", "0.01") as url:
        yield url


def _cut_off(text: str) -> list[str]:
    """Help lines cut off with '...' (the usage line's ``[ARGS]...`` is no cut)."""
    return [line for line in text.splitlines()[1:] if line.rstrip().endswith("...")]


def _invoke(*args: str, **env: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(main, list(args), env={"FASHN_API_KEY": None, **env})
    return result.exit_code, result.stdout, result.stderr


def test_dry_run_lists_every_bad_row_and_sends_nothing(tmp_path: Path) -> None:
    """--dry-run: every bad row with its line on stdout, exit 1; nothing written."""
    columns = ("model_image", "garment_image", "category")
    extra = [
        dict(zip(columns, ("images/model_0.png", "images/gone.png", "tops"), strict=True)),
        dict(zip(columns, ("images/model_0.png", "images/garment_0.png", "hat"), strict=True)),
        # A URL of another scheme is a URL refused by its scheme, not a path looked for.
        dict(zip(columns, ("ftp://127.0.0.1/m.png", "images/garment_0.png", "tops"), strict=True)),
        dict(zip(columns, ("https:/127.0.0.1/m.png", "images/garment_0.png", "tops"), strict=True)),
        # A name that would reorder the line, or split it: shown escaped, as a run shows it.
        dict(zip(columns, ("images/\u202egnp.png", "images/garment_0.png", "tops\r"), strict=True)),
    ]
    catalog = write_catalog(tmp_path, 3, models=3, extra=extra)
    out = tmp_path / "out"
    code, stdout, _ = _invoke("batch", str(catalog), "--out", str(out), "--dry-run")
    assert code == 1
    lines = stdout.splitlines()
    assert lines[0].endswith(
        "line 5: garment_image: no such file: " + str(tmp_path / "images/gone.png")
    )
    assert "line 6: category: must be one of tops, bottoms, one-pieces (got 'hat')" in lines[1]
    assert "line 7: model_image: expected an http(s) URL" in lines[2]
    assert "the scheme 'ftp' is not accepted" in lines[2]
    assert "line 8: model_image: " in lines[3]  # a URL missing its //: not a file
    assert "no such file" not in lines[3]
    assert "line 9: model_image: no such file: " in lines[4]
    assert lines[4].endswith("images/\\u202egnp.png")
    assert "\u202e" not in stdout
    assert lines[-1] == "dry run: 8 rows, 3 valid, 5 bad; nothing sent"
    assert not out.exists()

    clean = write_catalog(tmp_path / "clean", 2, models=2)
    code, stdout, _ = _invoke("batch", str(clean), "--out", str(out), "--dry-run")
    assert (code, stdout.splitlines()) == (0, ["dry run: 2 rows, 2 valid, 0 bad; nothing sent"])


@pytest.mark.parametrize("name", ["manifest.jsonl", "report.html", "journal.sqlite3"])
def test_a_catalog_the_job_would_overwrite_is_refused(tmp_path: Path, name: str) -> None:
    """The catalog is a file the job writes in --out (its manifest, say): exit 2, the
    file untouched, nothing sent."""
    write_catalog(tmp_path, 1, models=1)
    out = tmp_path / "out"
    out.mkdir()
    catalog = out / name
    text = (tmp_path / "catalog.csv").read_text()
    catalog.write_text(text)
    code, stdout, stderr = _invoke("batch", str(catalog), "--out", str(out), FASHN_API_KEY=K12)
    assert code == 2
    assert f"a file this job writes in --out ({name})" in stdout + stderr
    assert catalog.read_text() == text


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--dry-run"], {}, None),  # the catalog below is fine: a control case
        ([], {}, "no API key"),
        (["--output-format", "jpeg"], {"FASHN_API_KEY": K12}, "--output-format needs --model-name"),
        (["--submit-rate", "fast"], {"FASHN_API_KEY": K12}, "expected N/SECONDS"),
        (["--base-url", "ftp://x"], {"FASHN_API_KEY": K12}, "base_url must be an http(s) URL"),
    ],
)
def test_could_not_start_exits_2(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str | None
) -> None:
    """Bad options, no key: exit 2 with the reason, before anything is sent."""
    catalog = write_catalog(tmp_path, 1, models=1)
    code, stdout, stderr = _invoke(
        "batch", str(catalog), "--out", str(tmp_path / "o"), *args, **env
    )
    if message is None:
        assert code == 0
        return
    assert code == 2
    assert message in stdout + stderr


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("catalog.csv", "model_image,garment_image,category,size\n", "unknown column 'size'"),
    ],
)
def test_an_unreadable_catalog_exits_2(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    """A catalog that cannot be read at all stops the job before it starts."""
    if text is not None:
        (tmp_path / name).write_text(text)
    for extra in ([], ["--dry-run"]):
        code, stdout, stderr = _invoke(
            "batch", str(tmp_path / name), "--out", str(tmp_path / "o"), *extra, FASHN_API_KEY=K12
        )
        assert code == 2
        assert message in stdout + stderr


def test_a_closed_stderr_does_not_end_the_job(tmp_path: Path) -> None:
    """`batch ... 2>&1 | head -1`: the reader goes away at once; the job finishes all the
    same (exit 0, every row done, manifest written)."""
    with standalone_emulator("--time-scale", "0.01") as url:
        _closed_stderr_job(tmp_path, url)


def _closed_stderr_job(tmp_path: Path, emulator_url: str) -> None:
    catalog = write_catalog(tmp_path, 4, models=2)
    out = tmp_path / "results"
    args = ["batch", str(catalog), "--out", str(out), "--base-url", emulator_url,
            "--time-scale", "0.01", "--progress", "lines", "--log-interval", "0"]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
        cli(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(FASHN_API_KEY=KEY),
    )
    try:
        assert process.stderr is not None
        process.stderr.readline()  # the first line, then the reader is gone
        process.stderr.close()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert [e["status"] for e in read_manifest(out)] == ["done"] * 4


def test_batch_and_run_in_real_processes(tmp_path: Path, emulator_url: str) -> None:
    """`batch` with log lines, then `run` for one pair: exit 0, files, no key printed."""
    catalog = write_catalog(tmp_path, 8, models=4)
    out = tmp_path / "results"
    batch = run_cli(
        "batch", str(catalog), "--out", str(out), "--base-url", emulator_url,
        "--time-scale", "0.01", "--progress", "lines", "--log-interval", "0",
        FASHN_API_KEY=KEY,
    )  # fmt: skip
    assert batch.returncode == 0, batch.stderr
    assert "progress 8/8: 8 done; " in batch.stderr  # the summary's words
    assert "8 rows: 8 done" in batch.stderr
    assert [e["status"] for e in read_manifest(out)] == ["done"] * 8
    assert (out / "report.html").is_file()

    one = run_cli(
        "run", "--model", str(tmp_path / "images/model_0.png"),
        "--garment", str(tmp_path / "images/garment_1.png"), "--category", "tops",
        "--out", str(tmp_path / "one"), "--base-url", emulator_url, "--time-scale", "0.01",
        FASHN_API_KEY=KEY,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    (path,) = one.stdout.split()
    with Image.open(path) as image:
        image.verify()
    for process in (batch, one):
        assert KEY not in process.stdout + process.stderr
    assert len(control(emulator_url, "GET", "/_emulator/report")["accepted"]) == 9

    missing = run_cli(
        "run", "--model", str(tmp_path / "nope.png"), "--garment", path, "--category", "tops",
        "--base-url", emulator_url, FASHN_API_KEY=KEY,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    ftp = run_cli(
        "run", "--model", "ftp://127.0.0.1/m.png", "--garment", path, "--category", "tops",
        "--base-url", emulator_url, FASHN_API_KEY=KEY,
    )  # fmt: skip
    assert ftp.returncode == 2
    assert "the scheme 'ftp' is not accepted" in ftp.stderr  # it said "no such file: ftp:/m.png"
    wrong_key = run_cli(
        "batch", str(catalog), "--out", str(tmp_path / "other"), "--base-url", emulator_url,
        FASHN_API_KEY="not-the-right-key",
    )  # fmt: skip
    assert wrong_key.returncode == 2
    assert "refused the API key" in wrong_key.stderr
    assert "not-the-right-key" not in wrong_key.stdout + wrong_key.stderr


@pytest.mark.timeout(90)
def test_the_live_display_runs_on_a_real_terminal(tmp_path: Path) -> None:
    """The README's first command on a terminal (a pty: the live progress bar, not the
    log lines): it ends, exit 0, every row done. (With rich 15 the bar's stderr proxy
    wrote back into the console that wrote to it: the command hung, deaf to Ctrl-C.)"""
    master, slave = pty.openpty()
    env = cli_env(COLUMNS="120", LINES="40", TERM="xterm")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
        cli("demo", "--out", str(tmp_path / "out"), "--count", "3"),
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path,
    )  # fmt: skip
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + 60  # (a hang ends the test, not the suite)
    try:
        while time.monotonic() < deadline:  # read what it draws: it never blocks on it
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    shown += os.read(master, 65536)
                except OSError:  # the terminal closed: it has ended
                    break
            elif process.poll() is not None:
                break
        assert process.wait(timeout=1) == 0, shown.decode(errors="replace")[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert "3 rows: 3 done" in shown.decode(errors="replace")


def test_the_demo_runs_the_whole_bulk_path(tmp_path: Path) -> None:
    """The README's first command: a sample catalog, outputs, manifest and report; exit 0."""
    out = tmp_path / "demo-output"
    # A second run starts over in the same folder, named relative, then absolute; the
    # machine's HTTP_PROXY (a corporate one, here none) cannot reach the emulator: unused.
    for name in ("demo-output", str(out)):
        demo = run_cli("demo", "--out", name, "--count", "6", "--progress", "lines",
                       cwd=tmp_path, HTTP_PROXY=f"http://127.0.0.1:{free_port()}")  # fmt: skip
        assert demo.returncode == 0, demo.stderr
        assert "6 rows: 6 done" in demo.stderr
        assert "the emulator saw 6 submissions, 0 429s, 0 duplicates" in demo.stderr
    manifest = read_manifest(out)
    assert [e["status"] for e in manifest] == ["done"] * 6
    for entry in manifest:
        with Image.open(out / entry["files"][0]) as image:
            image.verify()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<span class='badge done'>done</span>") == 6
    # The sample garments are T-shirts: every row says tops.
    assert {e["inputs"]["category"] for e in manifest} == {"tops"}
    assert "in API time" in demo.stderr  # the x50 emulator's rates, in the API's minutes

    # A folder holding another job's journal is never wiped by the demo.
    other = tmp_path / "job"
    rows = load_catalog(out / "inputs" / "catalog.csv").rows
    Journal.open(other, meta={"catalog": "catalog.csv"}, rows=rows).close()
    refused = run_cli("demo", "--out", str(other), "--count", "2")
    assert refused.returncode == 2
    assert "holds the journal of another job" in refused.stderr
    assert (other / "journal.sqlite3").is_file()
    assert json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["id"] == "look-001"


def test_help_lists_the_commands() -> None:
    """`fashn-async --help` names every command, none cut off with '...'."""
    code, stdout, _ = _invoke("--help")
    assert code == 0
    for command in ("batch", "demo", "emulator", "run"):
        assert f"  {command} " in stdout
    assert not _cut_off(stdout)


@pytest.mark.parametrize("command", ["batch", "demo", "emulator", "run"])
def test_every_option_has_help(command: str) -> None:
    """Each option of each command says what it does (in the --help text too)."""
    cmd = main.commands[command]  # type: ignore[attr-defined]
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{command} {param.opts} has no help"
    code, stdout, _ = _invoke(command, "--help")
    assert code == 0
    assert not _cut_off(stdout)


def test_without_a_key_the_cli_names_its_own_options(tmp_path: Path, emulator_url: str) -> None:
    """No key: `--api-key` or FASHN_API_KEY, never the Python argument `api_key=...`;
    re-running a finished job needs no key (nothing to send), exit 0."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "results"
    args = ["batch", str(catalog), "--out", str(out), "--base-url", emulator_url,
            "--time-scale", "0.01", "--progress", "quiet", "--no-report"]  # fmt: skip
    for command in (args, ["run", "--model", "m.png", "--garment", "g.png", "--category", "tops"]):
        keyless = run_cli(*command)
        assert keyless.returncode == 2, keyless.stderr
        assert "--api-key or set the FASHN_API_KEY" in keyless.stderr
        assert "api_key=" not in keyless.stderr
    assert run_cli(*args, FASHN_API_KEY=KEY).returncode == 0
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "2 rows: 2 done" in again.stderr


def test_a_deadline_past_a_started_prediction_is_a_failure_not_a_start_error(
    tmp_path: Path,
) -> None:
    """`run --deadline` that runs out after the prediction started: exit 1, the deadline
    named; never 'cannot start' (exit 2)."""
    write_catalog(tmp_path, 1, models=1)
    with standalone_emulator("--time-scale", "0.01", "--latency", "500,600") as url:
        late = run_cli(
            "run", "--model", str(tmp_path / "images/model_0.png"),
            "--garment", str(tmp_path / "images/garment_0.png"), "--category", "tops",
            "--base-url", url, "--time-scale", "0.01", "--deadline", "0.5",
            FASHN_API_KEY=KEY,
        )  # fmt: skip
    assert late.returncode == 1, late.stderr
    assert "DeadlineExceededError" in late.stderr
    assert "cannot start" not in late.stderr


def test_run_exit_codes_tell_started_from_not_started() -> None:
    """Every error kind: started on the server -> 1, nothing started -> 2."""
    started = [
        errors.DeadlineExceededError("late"),
        errors.PredictionCanceledError("canceled"),
        errors.PoseError("no pose"),
        errors.SubmissionUncertainError("no answer"),
        errors.DownloadError("disk"),
        errors.NetworkTimeoutError("slow", prediction_id="p1"),
    ]
    never = [
        errors.ConfigurationError("no key"),
        errors.ImageInputError("no such file"),
        errors.AuthenticationError("bad key"),
        errors.ConnectError("down"),
        errors.OutOfCreditsError("broke"),
    ]
    assert {run_exit_code(e) for e in started} == {1}
    assert {run_exit_code(e) for e in never} == {2}


def test_run_refuses_an_out_it_cannot_write_before_sending(
    tmp_path: Path, emulator_url: str
) -> None:
    """`run --out` a regular file, a path under one, or a read-only file system: exit 2,
    one 'cannot start' line, no traceback, and nothing submitted (nothing charged)."""
    write_catalog(tmp_path, 1, models=1)
    (tmp_path / "a-file").write_text("x")
    outs = [tmp_path / "a-file", tmp_path / "a-file" / "sub"]
    readonly = tmp_path / "ro"
    readonly.mkdir()
    mounted = subprocess.run(  # noqa: S603 - fixed command, our own path
        ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(readonly)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if mounted.returncode == 0:
        outs.append(readonly)
    before = len(control(emulator_url, "GET", "/_emulator/report")["accepted"])
    try:
        for out in outs:
            done = run_cli(
                "run", "--model", str(tmp_path / "images/model_0.png"),
                "--garment", str(tmp_path / "images/garment_0.png"), "--category", "tops",
                "--base-url", emulator_url, "--time-scale", "0.01", "--out", str(out),
                FASHN_API_KEY=KEY,
            )  # fmt: skip
            assert done.returncode == 2, done.stderr
            assert done.stderr.startswith("cannot start: "), done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(readonly)], check=False)  # noqa: S603, S607
    assert mounted.returncode != 0 or "the file system is read-only" in done.stderr
    assert len(control(emulator_url, "GET", "/_emulator/report")["accepted"]) == before


def test_an_api_key_is_stripped_and_one_with_a_line_break_inside_refused(
    tmp_path: Path, emulator_url: str
) -> None:
    """A key read with its Windows line end (`$(cat key)`) works: surrounding whitespace
    is dropped. One with CR/LF inside: exit 2 with one clear line, no traceback, and the
    key shown nowhere (for `run` and `batch`, and for the SDK's own client)."""
    catalog = write_catalog(tmp_path, 1, models=1)
    image_args = [
        "--model", str(tmp_path / "images/model_0.png"),
        "--garment", str(tmp_path / "images/garment_0.png"), "--category", "tops",
    ]  # fmt: skip
    common = ["--base-url", emulator_url, "--time-scale", "0.01"]
    pasted = run_cli("run", *image_args, *common, "--out", str(tmp_path / "o"),
                     FASHN_API_KEY=KEY + "\r\n")  # fmt: skip
    assert pasted.returncode == 0, pasted.stderr
    before = len(control(emulator_url, "GET", "/_emulator/report")["accepted"])
    broken = "sec\r\nret-key"
    for command in (
        ["run", *image_args, *common, "--out", str(tmp_path / "o")],
        ["batch", str(catalog), "--out", str(tmp_path / "b"), *common, "--progress", "quiet"],
    ):
        refused = run_cli(*command, FASHN_API_KEY=broken)
        assert refused.returncode == 2, refused.stderr
        assert "control character inside it" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert "sec" not in refused.stderr.replace("seconds", "")
    assert len(control(emulator_url, "GET", "/_emulator/report")["accepted"]) == before
    with pytest.raises(errors.ConfigurationError) as caught:
        AsyncFashn(api_key=broken, base_url=emulator_url)
    assert "sec" not in str(caught.value)


def test_the_options_the_messages_name_are_the_real_ones() -> None:
    """Every ``--option`` a bulk message or hint names (the summary's re-run hints, the
    journal's edit notes) is an option of `fashn-async batch`."""
    import re

    from fashn_async.bulk import _command, _job, _journal

    batch = main.commands["batch"]  # type: ignore[attr-defined]
    options = {opt for p in batch.params for opt in p.opts} | {"--help"}
    named = set()
    for module in (_command, _job, _journal):
        named |= set(re.findall(r"--[a-z][a-z-]+", Path(module.__file__ or "").read_text()))
    assert named, "no option named at all: the scan is broken"
    assert named <= options, named - options
    assert {_command.RESEND_UNCERTAIN, _command.RETRY_FAILED} <= options


def test_one_spelling_of_canceled() -> None:
    """The API says `canceled`: the bulk code, the CLI (every string, help included) and
    the README's command-line sections never say `cancelled` (Python's own names,
    `CancelledError` and `get_cancelled_exc_class`, aside)."""
    import fashn_async.bulk
    import fashn_async.cli

    files = [*Path(fashn_async.bulk.__file__).parent.glob("*.py"), Path(fashn_async.cli.__file__)]
    readme = Path(__file__).parent.parent / "README.md"
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## Command line") : text.index("## The emulator, in your own")]
    sources = {str(f): f.read_text(encoding="utf-8") for f in files} | {"README": section}
    for command in ("batch", "demo", "emulator", "run"):
        sources[f"{command} --help"] = _invoke(command, "--help")[1]
    for name, source in sources.items():
        source = source.replace("get_cancelled_exc_class", "").replace("CancelledError", "")
        assert "ancelled" not in source, name
        assert "ancelling" not in source, name
    assert "canceled" in sources["README"]


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--submit-rate", "2/inf", "SECONDS must be a finite number above 0"),
        ("--submit-rate", "2/nan", "SECONDS must be a finite number above 0"),
        ("--submit-rate", "2/0", "SECONDS must be a finite number above 0"),
        ("--submit-rate", "2/-60", "SECONDS must be a finite number above 0"),
        ("--submit-rate", "0/60", "N must be at least 1"),
        ("--submit-rate", "-3/60", "N must be at least 1"),
        ("--status-rate", "2.5/10", "N must be a whole number"),
        ("--status-rate", "5/ten", "SECONDS must be a number"),
        ("--status-rate", "abc", "expected N/SECONDS such as 25/60, or off; got 'abc'"),
        ("--status-rate", "", "expected N/SECONDS"),
        ("--time-scale", "nan", "expected a finite number"),
        ("--log-interval", "nan", "expected a finite number"),
        ("--log-interval", "inf", "not in the range"),
    ],
)
def test_nonsense_numbers_are_refused_up_front(
    tmp_path: Path, option: str, value: str, why: str
) -> None:
    """A rate or number that means nothing (2/inf, nan, 0, negative, words) is refused
    with the reason, exit 2, before anything runs: never a wait without end."""
    catalog = write_catalog(tmp_path, 1, models=1)
    code, stdout, stderr = _invoke(
        "batch", str(catalog), "--out", str(tmp_path / "o"), option, value, FASHN_API_KEY=K12
    )
    assert code == 2, stdout + stderr
    assert f"Invalid value for '{option}'" in stderr
    assert why in stderr
    assert not (tmp_path / "o").exists()
    code, _, stderr = _invoke("run", "--model", "m.png", "--garment", "g.png", "--category",
                              "tops", "--deadline", "nan", FASHN_API_KEY=K12)  # fmt: skip
    assert code == 2
    assert "expected a finite number" in stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("phase", ["asking the time scale", "the credits check"])
def test_a_signal_during_start_up_stops_cleanly(
    tmp_path: Path, signum: signal.Signals, phase: str
) -> None:
    """SIGINT or SIGTERM while `batch` is still starting (its first request hangs on a
    server that never answers; the signal is sent once the server has the connection):
    one line, exit 130, no traceback, nothing sent; the same command then works."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(60)
        port = silent.getsockname()[1]
        args = ["batch", str(catalog), "--out", str(out), "--base-url",
                f"http://127.0.0.1:{port}", "--progress", "lines"]  # fmt: skip
        if phase == "the credits check":
            args += ["--time-scale", "1"]  # not asked: the first request is the credits check
        with subprocess.Popen(  # noqa: S603 - our own interpreter and code
            cli(*args),
            env=cli_env(FASHN_API_KEY=KEY),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            try:
                connection, _ = silent.accept()  # the command is inside its start-up now
                with connection:
                    request = connection.recv(65536).decode("latin-1")
                    path = "/v1/credits" if phase == "the credits check" else "/_emulator/config"
                    assert path in request.split("\r\n")[0], request
                    process.send_signal(signum)
                    _, stderr = process.communicate(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == STOPPED_STARTING
    assert journal_counts(out).get("pending", 0) in (0, 2)  # nothing sent
    assert not journal_counts(out).keys() - {"pending"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_python_loads_the_package_leaves_nothing(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGINT or SIGTERM sent as `batch` starts, while Python still loads the package
    (before the command's own handlers, as the README says): the process ends by the
    signal, and nothing was read, written or sent (no --out, no connection)."""
    catalog = write_catalog(tmp_path, 2, models=2)
    out = tmp_path / "out"
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        args = ["batch", str(catalog), "--out", str(out), "--base-url",
                f"http://127.0.0.1:{port}"]  # fmt: skip
        with subprocess.Popen(  # noqa: S603 - our own interpreter and code
            cli(*args), env=cli_env(FASHN_API_KEY=KEY), stderr=subprocess.PIPE, text=True
        ) as process:
            process.send_signal(signum)  # at once: the imports take a few hundred ms
            process.communicate(timeout=60)
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):
            silent.accept()  # nobody connected
    assert process.returncode == -signum
    assert not out.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_as_the_program_exits_does_not_change_its_exit_code(
    signum: signal.Signals,
) -> None:
    """A stop signal in the interpreter's last moments (a second SIGTERM just after a
    clean stop, the third break-it helper: exit 143 in 2 of 10 gaps) is held until the
    process is gone: the exit code is the command's. Here the command is ``--help``
    (exit 0), and the signal comes from an exit handler, as late as one can."""
    code = (
        "import atexit, os, sys, time\n"
        f"atexit.register(lambda: (os.kill(os.getpid(), {int(signum)}), time.sleep(0.2)))\n"
        "sys.argv = ['fashn-async', '--help']\n"
        "from fashn_async.__main__ import entry\n"
        "entry()\n"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
