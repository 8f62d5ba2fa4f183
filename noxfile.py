"""Sessions: tests, lint, typing, bench. ``nox -s tests`` runs what CI runs."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite, against the in-process emulator on loopback."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[test]", "mypy>=1.10")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmarks: emulator in its own process, results as a table and JSON.

    ``nox -s bench -- --quick`` for a smoke run; ``-- --only polling`` for one of them.
    The redis extra is for bench_scaleout.py.
    """
    session.install("-e", ".[bench,redis]")
    session.run("python", "benchmarks/run_all.py", *session.posargs)
