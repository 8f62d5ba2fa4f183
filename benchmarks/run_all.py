"""Run every benchmark, one after the other, each as its own script; then sum up.

    python benchmarks/run_all.py [--quick] [--only throughput polling ...] [--profile]

(``nox -s bench`` runs this with the ``bench`` extra installed.) Each script prints its
table and writes ``benchmarks/results/<name>.json``; this one then writes
``results/latest.json`` (every result together) and ``results/summary.md`` (the tables
and the goal lines, as pasted into the README). Other ``bench_*.py`` scripts found in
benchmarks/ (bench_scaleout.py, say) run after ours with the same ``--quick``; a failure
of one is reported and the rest still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _harness as h

#: Ours, in the order they run: the quick ones first.
BENCHMARKS = ("overhead", "polling", "throughput", "scaling", "memory")


def _scripts(only: list[str] | None) -> list[tuple[str, Path, bool]]:
    """(name, script, ours) to run; others' bench_*.py after ours."""
    ours = [(name, h.HERE / f"bench_{name}.py", True) for name in BENCHMARKS]
    others = [
        (path.stem.removeprefix("bench_"), path, False)
        for path in sorted(h.HERE.glob("bench_*.py"))
        if path.stem.removeprefix("bench_") not in BENCHMARKS
    ]
    chosen = ours + others
    if only:
        chosen = [item for item in chosen if item[0] in only]
    return chosen


def _markdown(text: str) -> list[str]:
    """A script's table text as Markdown: its caption lines, a blank line, the table."""
    lines = text.splitlines()
    caption = [line for line in lines if not line.startswith("|")]
    rows = [line for line in lines if line.startswith("|")]
    return [f"**{caption[0]}**", *caption[1:], "", *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N everywhere")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these")
    parser.add_argument("--profile", action="store_true", help="profile our client too")
    parser.add_argument("--results", type=Path, default=h.RESULTS)
    args = parser.parse_args()
    started = time.monotonic()
    info = h.machine()
    print(h.describe(info), flush=True)
    outcomes: dict[str, Any] = {}
    for name, script, ours in _scripts(args.only):
        command = [sys.executable, str(script)]
        if args.quick:
            command.append("--quick")
        if ours:
            command += ["--results", str(args.results)]
            if args.profile:
                command.append("--profile")
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        t0 = time.monotonic()
        code = subprocess.run(command, check=False).returncode
        outcomes[name] = {"exit_code": code, "seconds": round(time.monotonic() - t0, 1)}
    results: dict[str, Any] = {}
    summary = [f"Command: `{h.command_line()}`", "", "```", h.describe(info), "```"]
    for name in BENCHMARKS:
        path = args.results / f"{name}.json"
        if name not in outcomes or not path.exists():
            continue
        data = json.loads(path.read_text())
        results[name] = data
        summary += ["", *_markdown(data["table"])]
        summary += ["", *(f"- {line}" for line in data["goals"])]
    elapsed = time.monotonic() - started
    combined = {
        "command": h.command_line(),
        "machine": info,
        "duration_s": round(elapsed, 1),
        "scripts": outcomes,
        "results": results,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.json").write_text(json.dumps(combined, indent=2) + "\n")
    (args.results / "summary.md").write_text("\n".join(summary) + "\n")
    print(f"\n=== done in {elapsed / 60:.1f} min")
    for name, outcome in outcomes.items():
        print(f"{name:12} exit {outcome['exit_code']}  {outcome['seconds']:7.1f} s")
    for data in results.values():
        for line in data["goals"]:
            print(line)
    if any(outcome["exit_code"] != 0 for outcome in outcomes.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
