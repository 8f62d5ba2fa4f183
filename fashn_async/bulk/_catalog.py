"""A catalog of try-ons: CSV or JSONL rows, validated one by one, with line numbers.

Every row is checked before anything is sent: image paths (relative to the catalog
file) must exist and hold an image, every option must parse and be in range. A bad row
is kept with its line number and what is wrong; it never stops the others: whatever
goes wrong while reading one row (a NUL byte in a path, a JSON line nested too deep for
the parser, a byte that is not UTF-8, an ``id`` that is neither a string nor an
integer, any exception) makes that row ``invalid``. A CSV quote left open, whose
value runs on over lines that look like rows, makes its row ``invalid`` (``unclosed
quote``) and those lines are read as the rows they are, so no row vanishes silently.
Only a file that cannot be read as a catalog at all raises :class:`CatalogError`.
(Reading the file into records is :mod:`fashn_async.bulk._records`; this module
validates them.)

The file is read as a stream (:func:`iter_catalog`): a dry run over a million rows holds
one row at a time. Each row has an ``identity`` (its ``id`` column, else a hash of its
values) by which the journal recognises it when the file is edited between runs.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import threading
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from fashn_async._coerce import coerce_request
from fashn_async._images import check_image_input, checked_image_file, is_data_uri, is_given_url
from fashn_async._models import Request, TryOnRequest
from fashn_async._prepare import pixels_problem
from fashn_async.bulk._cells import body_problem, guess_cell, json_type, parse_cell, printable
from fashn_async.bulk._identity import (
    LABEL_COLUMN,
    asks,
    digest,
    file_sha256,
    identity_of,
    row_key,
    unique_identities,
)
from fashn_async.bulk._records import CatalogError, delimited, jsonl, text_lines
from fashn_async.bulk._words import repeated
from fashn_async.errors import ImageInputError, InvalidRequestError

__all__ = [
    "Catalog",
    "CatalogRow",
    "iter_catalog",
    "load_catalog",
    "may_repeat",
]

IMAGE_COLUMNS: Final = ("model_image", "garment_image")
#: A free-text column naming the row in the manifest and the report; never sent.
_V1_TYPES: Final = {field.name: field.type for field in attrs.fields(TryOnRequest)}
_V1_REQUIRED: Final = ("model_image", "garment_image", "category")
_KNOWN: Final = (
    f"the columns are {', '.join(_V1_TYPES)} and {LABEL_COLUMN}; "
    "--model-name sends any columns as model inputs"
)
_FORMATS: Final = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: The Unicode forms an image path is looked for in when it is not found as written.
_FORMS: Final = ("NFC", "NFD")
#: Distinct image files whose check is remembered while reading (a bounded cache).
_CHECKED_FILES: Final = 4096


@attrs.frozen(kw_only=True)
class CatalogRow:
    """One row of the catalog.

    Attributes:
        row: Its number among the data rows, from 1.
        line: The line of the file it starts on.
        inputs: The values as written in the file (the manifest repeats them).
        key: A stable name derived from the row: ``row00042_<hash of its inputs>``.
        identity: What the journal knows the row by across edits of the file:
            ``id:<the id column>``, else ``sha:<hash of its values>`` (``#2``, ``#3``...
            appended to a repeat, skipping any another row has: unique in the catalog).
        label: The ``id`` column, if any.
        request: The validated request; None when the row is bad.
        error: What is wrong with the row, naming the column; None when it is good.
        images: Each image column's resolved source: a Path, or a URL / data URI.
        asks: What a good row asks for, however written (:func:`asks`); "" for a bad one.
    """

    row: int
    line: int
    inputs: Mapping[str, Any]
    key: str
    identity: str = ""
    label: str | None = None
    request: Request | None = None
    error: str | None = None
    images: Mapping[str, Path | str] = attrs.field(factory=dict)
    asks: str = ""

    @property
    def ok(self) -> bool:
        """True when the row can be sent."""
        return self.error is None


@attrs.frozen(kw_only=True)
class Catalog:
    """A loaded catalog: its rows in file order and the SHA-256 of the file's bytes."""

    path: Path
    sha256: str
    rows: tuple[CatalogRow, ...]

    @property
    def bad(self) -> list[CatalogRow]:
        """The rows that cannot be sent."""
        return [row for row in self.rows if not row.ok]


def may_repeat(row: CatalogRow) -> bool:
    """Whether ``row`` has no ``id`` (ids tell rows apart), and so may repeat an earlier row.

    A good row with no id that asks for what an earlier good row does, with an id or
    without (however written: ``./a.jpg`` and ``a.jpg``, a default left out or written,
    :func:`asks`) is read as a bad row: it would be paid for again for the same result
    (the API's seed, 42 by default, makes the same inputs give the same output)."""
    return (row.identity or identity_of(row.inputs)).startswith("sha:")


def load_catalog(
    path: str | Path,
    *,
    model_name: str | None = None,
    output_format: str | None = None,
    stop: threading.Event | None = None,
    prepared: bool = False,
) -> Catalog:
    """Read and validate every row of a CSV, TSV or JSONL catalog.

    Args:
        path: The catalog; image paths in it are relative to its folder.
        model_name: None sends the flat v1 body (``TryOnRequest``, every option checked
            here); a model name (``tryon-v1.6``) sends ``{model_name, inputs}`` with the
            row's columns as inputs.
        output_format: Default ``output_format`` input of rows that do not set one
            (only with ``model_name``).
        stop: Set from another thread to stop reading (between two rows).
        prepared: Images are resized and re-encoded before sending; else a row whose
            files make a request over the API's limit is bad (``_cells.body_problem``).

    Raises:
        CatalogError: the file is missing, unreadable, not a regular file (a FIFO would
            block), of an unknown format, or its columns are wrong; or ``stop`` was set.
    """
    path = Path(path)
    read = []
    for row in iter_catalog(
        path, model_name=model_name, output_format=output_format, prepared=prepared
    ):
        if stop is not None and stop.is_set():
            raise CatalogError(f"{path}: reading stopped")
        read.append(row)
    identities = unique_identities([r.identity or identity_of(r.inputs) for r in read])
    rows = tuple(
        attrs.evolve(row, identity=identity) for row, identity in zip(read, identities, strict=True)
    )
    if not rows:
        raise CatalogError(f"{path}: the catalog has no rows")
    return Catalog(path=path, sha256=file_sha256(path), rows=rows)


def iter_catalog(
    path: str | Path,
    *,
    model_name: str | None = None,
    output_format: str | None = None,
    prepared: bool = False,
) -> Iterator[CatalogRow]:
    """The rows of a catalog one by one, as read (memory does not grow with rows).

    Rows come without their ``identity`` (given, repeats told apart, by
    :func:`load_catalog`); arguments as for :func:`load_catalog`.

    Raises:
        CatalogError: as :func:`load_catalog`, when the header is read (a header that is
            not UTF-8 text too; a later line that is not makes its row invalid).
    """
    path = Path(path)
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise CatalogError(
            f"{path}: unknown catalog format {path.suffix or '(no suffix)'!r}; "
            "use .csv, .tsv or .jsonl"
        )
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO's open() would wait for a writer
            raise CatalogError(f"{path}: not a regular file")
        handle = path.open("rb")
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path}: cannot read it: {getattr(exc, 'strerror', exc)}") from None
    with handle:
        lines = text_lines(path, handle)
        if kind == "jsonl":
            records = jsonl(lines)
        else:
            records = delimited(
                path, lines, kind, functools.partial(_check_header, path, model_name=model_name)
            )
        reader = _RowReader(path.resolve().parent, model_name, output_format, prepared)
        reader.typed = kind == "jsonl"  # JSON values are as meant: "007" stays text
        first: dict[int, int] = {}  # what a good row asks for: the first line asking it
        for number, (line, values) in enumerate(records, start=1):
            row = reader.row(number, line, values)
            if row.ok:
                seen = first.setdefault(hash(row.asks), row.line)
                if seen != row.line and may_repeat(row):
                    row = attrs.evolve(row, request=None, asks="", error=repeated(seen))
            yield row


def _columns(names: list[str]) -> str:
    """Column names as a message shows them: quoted (a column with no name is never
    among them: :func:`delimited` leaves those out)."""
    return ", ".join(repr(name) for name in names)


def _check_header(path: Path, header: list[str], *, model_name: str | None) -> None:
    """Refuse a header that cannot make rows: every problem at once, and near names."""
    repeated = sorted({name for name in header if header.count(name) > 1})
    required = _V1_REQUIRED if model_name is None else IMAGE_COLUMNS
    missing = [name for name in required if name not in header]
    known = (*_V1_TYPES, LABEL_COLUMN)
    unknown = [n for n in header if n not in known] if model_name is None else []
    if not (repeated or missing or unknown):
        return
    problems = [f"repeated column {_columns(repeated)}"] if repeated else []
    problems += [f"missing column {', '.join(missing)}"] if missing else []
    problems += [f"unknown column {_columns(unknown)}"] if unknown else []
    loose = {"_".join(n.lower().replace("-", " ").split()): n for n in header if n not in known}
    near = [f"{n} for {loose[n]!r}" for n in known if n in loose and n not in header]
    hint = f"; column names are exact (did you mean {', '.join(near)}?)" if near else ""
    has = ", ".join(header) or "no column names"
    raise CatalogError(
        f"{path}: line 1: {'; '.join(problems)}{hint} (the header has: {has}; {_KNOWN})"
    )


# -- validating rows ---------------------------------------------------------------


class _RowReader:
    def __init__(
        self, base: Path, model_name: str | None, output_format: str | None, prepared: bool
    ) -> None:
        self.base = base
        self.model_name = model_name
        self.output_format = output_format
        self.prepared = prepared  # images prepared before sending: no body-size limit here
        self.typed = False  # values typed already (JSONL), not CSV cells to read
        # One read per distinct path text, remembered for the last few thousand.
        self._file = functools.lru_cache(maxsize=_CHECKED_FILES)(self._check_path)

    def row(self, number: int, line: int, values: dict[str, Any] | str) -> CatalogRow:
        """The row, validated; anything that goes wrong makes it invalid, never raises."""
        if isinstance(values, str):  # unreadable as a record at all
            return CatalogRow(
                row=number, line=line, inputs={}, key=row_key(number, {}), error=values,
                identity=f"line:{line}",
            )  # fmt: skip
        try:
            return self._row(number, line, values)
        except Exception as exc:  # one bad row never stops the load
            return CatalogRow(
                row=number,
                line=line,
                inputs=printable(values),
                key=row_key(number, printable(values)),
                identity=identity_of(printable(values)),
                error=f"cannot read this row: {type(exc).__name__}: {exc!s:.200}",
            )

    def _row(self, number: int, line: int, values: dict[str, Any]) -> CatalogRow:
        inputs = dict(values)
        label = inputs.pop(LABEL_COLUMN, None)
        key = row_key(number, values)
        problems: list[str] = []
        if label is not None and (not isinstance(label, str | int) or isinstance(label, bool)):
            # JSON ids are strings or integers (1 and "1" name the same row); anything
            # else has no stable text to recognise the row by across runs.
            problems.append(
                f"{LABEL_COLUMN}: expected a string or an integer, got "
                f"{json_type(label)} {json.dumps(label, default=str)[:60]}"
            )
        label = None if label is None else str(label)
        fields: dict[str, Any] = {}
        images: dict[str, Path | str] = {}
        sources: dict[str, str] = {}  # each image as what it is (its bytes' hash, a URL)
        for column, value in inputs.items():
            if column in IMAGE_COLUMNS:
                source, problem, sources[column] = self._image(column, value)
                if problem is None:
                    images[column] = source
                    fields[column] = source
                else:
                    problems.append(problem)
                continue
            try:
                fields[column] = self._option(column, value)
            except ValueError as exc:
                problems.append(f"{column}: {exc}")
        required = _V1_REQUIRED if self.model_name is None else IMAGE_COLUMNS
        problems += [f"{name}: is required" for name in required if name not in inputs]
        too_large = None if self.prepared or problems else body_problem(images.values())
        problems += [too_large] if too_large else []
        request = None
        if not problems:
            try:
                request = self._request(fields)
            except InvalidRequestError as exc:
                problems.append(exc.message)
        return CatalogRow(
            row=number,
            line=line,
            inputs=values,
            key=key,
            label=label,
            request=request,
            error="; ".join(problems) or None,
            images=images,
            asks="" if request is None else asks(request, sources),
        )

    def _request(self, fields: dict[str, Any]) -> Request:
        if self.model_name is None:
            return coerce_request(fields, kind=TryOnRequest)
        if self.output_format is not None:
            fields.setdefault("output_format", self.output_format)
        return coerce_request({"model_name": self.model_name, "inputs": fields})

    def _option(self, column: str, value: Any) -> Any:
        if self.model_name is None:
            kind = _V1_TYPES.get(column)
            if kind is None:
                raise ValueError(f"unknown column ({_KNOWN})")
            if isinstance(value, str) and not self.typed:  # a CSV cell: `tops ` is `tops`
                value = value.strip()  # (every v1 option is a number, a flag or a name)
            return parse_cell(value, str(kind))
        return value if self.typed else guess_cell(value)

    def _image(self, column: str, value: Any) -> tuple[Path | str, str | None, str]:
        """The image's source, what is wrong with it (or None), and what it is: a file's
        bytes' hash, a URL as given, a data URI's hash."""
        if not isinstance(value, str) or not value.strip():
            return "", f"{column}: expected a file path, URL or data URI, got {value!r:.60}", ""
        text = value.strip()
        if is_given_url(text):
            try:
                check_image_input(column, text)
            except InvalidRequestError as exc:
                return "", exc.message, ""
            inline = is_data_uri(text)  # (held as its hash: it may be megabytes)
            return text, None, f"inline:{digest(text.encode())}" if inline else f"url:{text}"
        if "\x00" in text:
            return "", f"{column}: a file path cannot hold a NUL byte", ""
        path, problem, sha = self._file(text)
        return path, None if problem is None else f"{column}: {problem}", f"file:{sha}"

    def _check_path(self, text: str) -> tuple[Path, str | None, str]:
        path = self.base / Path(text).expanduser()
        if not os.path.lexists(path):
            # The same name as another system wrote it: macOS decomposes accents (NFD),
            # most others compose them (NFC); the file may be in either form.
            forms = (self.base / Path(unicodedata.normalize(f, text)).expanduser() for f in _FORMS)
            path = next((other for other in forms if os.path.lexists(other)), path)
        return (path, *_check_file(path, self.prepared))


def _check_file(path: Path, prepared: bool) -> tuple[str | None, str]:
    """What makes ``path`` unusable as an image (or None), and its bytes' hash: the
    checks a request runs before sending (a regular file: a FIFO, device or folder is
    refused without being opened, so nothing blocks; within the size cap, a known
    signature and a whole structure; ``prepared``: not too many pixels to prepare), on
    the one read of the file."""
    try:
        data = checked_image_file(path)
        problem = pixels_problem(data) if prepared else None
    except ImageInputError as exc:
        problem = exc.message.removeprefix("file: ").removeprefix("the data is ")
    if problem is not None:
        return (problem if str(path) in problem else f"{problem}: {path}"), ""
    return None, digest(data)
