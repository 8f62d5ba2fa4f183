"""One vocabulary for a person: the progress line, the summary and the report name each
state of a row by its journal name (``done``, ``canceled``, ``invalid``...)."""

from __future__ import annotations

from collections.abc import Mapping

from fashn_async.bulk._rows import State

__all__ = ["counted", "plural", "repeated"]


def plural(n: int, noun: str) -> str:
    """``1 row``, ``2 rows``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def counted(counts: Mapping[str, int], *, always: tuple[str, ...] = ()) -> str:
    """``3 done, 2 submitted, 1 invalid``: states in journal order, zeros left out
    (except ``always``), each named by its journal name."""
    parts = [
        f"{counts.get(state, 0)} {state}"
        for state in State.ALL
        if counts.get(state, 0) or state in always
    ]
    return ", ".join(parts) or "nothing"


def repeated(first: int) -> str:
    """Why a row with no id that asks for what an earlier one (on line ``first``) does is
    not sent (the job's start and ``--dry-run`` name it, as a bad row)."""
    return (
        f"repeats line {first} (it asks for the same, and has no id): not sent, as it "
        "would be paid for again for the same result; give it an id to have it sent too, "
        "or remove it"
    )
