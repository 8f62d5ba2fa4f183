"""What changed since a job began: its settings (some must not), and its catalog (a
plan for the journal, decided apart from the database; the journal applies it in one
transaction).

What decides every request (:data:`CHECKED`: base URL, model, output format) must not
change under an existing journal: :func:`settings_problem` says why a run is refused.

Rows are known by their identity (the ``id`` column, else a hash of their values), not
by their place in the file. Rows not sent yet (``pending``, ``invalid``) take the
catalog's values, or leave with it; a row already sent keeps its record, and an edit to
it, or its removal, is reported in a sentence (:attr:`SyncPlan.edits`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from fashn_async._redact import shown_url
from fashn_async.bulk._catalog import CatalogRow, may_repeat
from fashn_async.bulk._rows import SCHEMA_VERSION, RowRecord, State

__all__ = [
    "CHECKED",
    "SyncPlan",
    "at_line",
    "canonical_json",
    "plan_sync",
    "settings_problem",
]

#: Journal settings that must be equal for a run to resume, with what to call them.
CHECKED: Final = {
    "base_url": "the API address (--base-url)",
    "model_name": "the model (--model-name)",
    "output_format": "the output format (--output-format)",
}

_KEPT = (
    "the journal keeps the values it was sent with; give the new version another id (or a "
    "new --out folder) to send it"
)
#: What happens to an edited row already sent but not done (see :meth:`Journal.reset`).
_AFTER_EDIT: Final = {
    State.CANCELED: "the journal keeps the values it was sent with until it is sent again "
    "(its prediction found canceled), then the new ones are sent and recorded",
    State.FAILED: "the journal keeps the values it was sent with; --retry-failed sends the "
    "new ones and records them",
    State.UNCERTAIN: "the journal keeps the values it was sent with; --resend-uncertain sends "
    "the new ones and records them",
}


@attrs.frozen
class SyncPlan:
    """The journal changes that bring it in line with the catalog.

    Attributes:
        matched: Journal row number -> its catalog row, for rows the journal knew.
        updates: Unsent rows' new values: ``(line, key, position, label, inputs, state,
            error name, error message, row)``.
        places: Sent rows' new ``(line, position, row)``.
        deletes: ``(row,)`` of unsent rows no longer in the catalog.
        kept: ``(row,)`` of sent rows no longer in the catalog (their record stays).
        fresh: Catalog rows new to the journal.
        edits: What changed in rows already sent, one sentence each.
        renamed: ``(identity, label, row)`` of sent rows found under another identity
            (the same request written another way: :func:`plan_sync`).
    """

    matched: dict[int, CatalogRow]
    updates: list[tuple[Any, ...]]
    places: list[tuple[int, int, int]]
    deletes: list[tuple[int]]
    kept: list[tuple[int]]
    fresh: list[CatalogRow]
    edits: list[str]
    renamed: list[tuple[str, str | None, int]] = attrs.field(factory=list)


def settings_problem(
    path: Path, known: Mapping[str, str | None], meta: Mapping[str, str | None]
) -> str | None:
    """Why the journal at ``path`` (its settings ``known``) cannot take a run with the
    settings ``meta``, or None."""
    if known.get("schema") != SCHEMA_VERSION:
        return (
            f"{path} was written by another version of fashn-async "
            f"(journal schema {known.get('schema')!r}); use a new --out folder"
        )
    for name, what in CHECKED.items():
        if name in meta and known.get(name) != meta[name]:
            was, now = known.get(name), meta[name]
            if name == "base_url":  # as every URL is shown: no credential
                was, now = (None if u is None else shown_url(u) for u in (was, now))
            return (
                f"{what} changed since this job started: {path} has {was!r}, this "
                f"run has {now!r}. Prediction ids belong to one API and one setting; "
                "run with the same options to finish that job, or use a new --out folder."
            )
    return None


def plan_sync(records: Sequence[RowRecord], rows: Sequence[CatalogRow]) -> SyncPlan:
    """Match ``rows`` (the catalog now) to ``records`` (the journal), in three passes:

    1. by identity, where both ask for the same (:attr:`CatalogRow.asks`; a record from
       before rows kept it, or a bad row, by its id alone; a row with no id only where
       both sides' request is known and the same);
    2. a row left to a record already sent that asks for the same, whatever the
       identities: the same request written another way (a path with ``./``, made
       absolute or through a symlink, a default written out, an id re-saved by a
       spreadsheet, ``000`` to ``0`` or two ids made one) is the row already paid for;
    3. by identity, the rest: an edit (the same id asking for something else), a bad
       row with no id.

    A row with no id is known by the text of its values alone: a bad one (a repeat of
    an earlier row, say) is matched only once every good row had its chance at a record
    sent, as is a good one to an unsent record: taken first by that text, the record of a
    request paid for left its good row to be sent again (rows swapped, the first of two
    repeats removed or given an id: each paid twice). Each record is matched at most
    once; a row left is new."""
    # Identities are unique in a catalog (unique_identities); a journal written before
    # they were may hold one twice: each record is matched at most once all the same.
    known: dict[str, list[RowRecord]] = {}
    for each in records:
        known.setdefault(each.identity, []).append(each)
    plan = SyncPlan({}, [], [], [], [], [], [])
    left = [row for row in rows if not _match(plan, known, row, _same_identity_and_request)]
    sent: dict[str, list[RowRecord]] = {}
    for matches in known.values():
        for record in matches:
            if record.state not in State.UNSENT and record.asks:
                sent.setdefault(record.asks, []).append(record)
    written_another_way: list[int] = []  # their lines
    still_left = []
    for current in left:  # the whole second pass before the third
        same = sent.get(current.asks) if current.asks else None
        if not same:
            still_left.append(current)
            continue
        record = same.pop(0)
        known[record.identity].remove(record)
        _matched(plan, record, current)
        if record.identity != current.identity:
            written_another_way.append(current.line)
    for current in still_left:
        if not _match(plan, known, current, lambda _record, _row: True):
            plan.fresh.append(current)
    if written_another_way:
        plan.edits.append(_taken_note(written_another_way))
    for matches in known.values():
        for record in matches:
            if record.state in State.UNSENT:
                plan.deletes.append((record.row,))
                continue
            plan.kept.append((record.row,))
            plan.edits.append(
                f"{_gone_name(record)} is no longer in the catalog; it was already sent "
                f"({record.state}): its record is kept"
            )
    return plan


def _taken_note(lines: list[int]) -> str:
    """The sentence for rows taken for rows already sent (by what they ask for)."""
    shown = ", ".join(map(str, lines[:10])) + (
        f" and {len(lines) - 10} more" if len(lines) > 10 else ""
    )
    which = f"the row at line {shown} asks" if len(lines) == 1 else f"the rows at lines {shown} ask"
    return (
        f"{which} for what rows already sent asked for, written another way (another id, "
        "a path to the same file, a default written out): taken for those rows, not sent "
        "again"
    )


def _same_identity_and_request(record: RowRecord, current: CatalogRow) -> bool:
    if may_repeat(current):  # no id: its identity is only its text
        return bool(current.asks) and record.asks == current.asks
    return not (record.asks and current.asks and record.asks != current.asks)


def _match(
    plan: SyncPlan,
    known: dict[str, list[RowRecord]],
    current: CatalogRow,
    fits: Callable[[RowRecord, CatalogRow], bool],
) -> bool:
    """Match ``current`` to the first record of its identity that ``fits``; whether one did."""
    for record in known.get(current.identity, []):
        if fits(record, current):
            known[current.identity].remove(record)
            _matched(plan, record, current)
            return True
    return False


def _matched(plan: SyncPlan, record: RowRecord, current: CatalogRow) -> None:
    """Record ``current`` as ``record``: an unsent one takes the catalog's values; a sent
    one keeps its record, and a change of what it asks for is reported."""
    plan.matched[record.row] = current
    if record.state in State.UNSENT:
        plan.updates.append(
            (
                current.line, current.key, current.row, current.label,
                canonical_json(current.inputs),
                State.PENDING if current.ok else State.INVALID,
                None if current.ok else "InvalidRow",
                None if current.ok else at_line(current), current.asks or None, record.row,
            )
        )  # fmt: skip
        return
    plan.places.append((current.line, current.row, record.row))
    if record.identity != current.identity or record.label != current.label:
        plan.renamed.append((current.identity, current.label, record.row))
    if record.asks and current.asks:
        changed = record.asks != current.asks  # (the same written another way: no)
    else:  # a record from before rows kept what they ask for
        changed = canonical_json(current.inputs) != canonical_json(record.inputs)
    if changed:
        plan.edits.append(
            f"line {current.line}{_named(current.label)} changed after it was sent "
            f"({record.state}): {_after_edit(record.state, current)}"
        )


def _after_edit(state: str, current: CatalogRow) -> str:
    """What becomes of a row edited after it was sent (see :meth:`Journal.reset`)."""
    if state in _AFTER_EDIT and not current.ok:
        return (
            "the journal keeps the values it was sent with; the new ones are not sent: "
            f"{current.error}"
        )
    return _AFTER_EDIT.get(state, _KEPT)


def at_line(row: CatalogRow) -> str:
    return f"line {row.line}: {row.error}"


def _gone_name(record: RowRecord) -> str:
    """A row no longer in the catalog, by what a person can find: its id, else the line
    it was on when last read (its place in the file is gone)."""
    if record.label:
        return f"the row with id {record.label!r} (line {record.line} when last read)"
    return f"the row at line {record.line} when last read"


def _named(label: str | None) -> str:
    return f", id {label!r}" if label else ""


def canonical_json(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), ensure_ascii=False, default=str, sort_keys=True)
