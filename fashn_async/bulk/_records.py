"""Reading a catalog file into records, before any row is validated.

Bytes become text line by line: UTF-8, or UTF-16/UTF-32 when the file starts with
their byte-order mark (Excel's "Unicode Text"); a byte that is not UTF-8 is kept as a
lone surrogate, so that only its row is refused (:func:`not_utf8`). Text becomes
records: CSV/TSV rows of the header's columns (:func:`delimited`), or JSON objects
(:func:`jsonl`). Each record is ``(line, values)``, or ``(line, problem)`` when it
cannot be read at all. Only a file that cannot be read as a catalog raises
:class:`CatalogError`.

A CSV as spreadsheets export it is read as meant: a header with no comma is split at
semicolons (European Excel), else at tabs; a column with no name (Excel's trailing
``,,``) is ignored while its cells are empty, and so are empty values past the header's
last column.
"""

from __future__ import annotations

import codecs
import collections
import csv
import functools
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

from fashn_async.errors import ConfigurationError

__all__ = [
    "MAX_CELL",
    "CatalogError",
    "delimited",
    "jsonl",
    "not_utf8",
    "text_lines",
]

#: The longest CSV cell read (bytes): a data URI of a large photo fits; Python's default
#: of 128 KiB does not.
MAX_CELL: Final = 256 * 1024 * 1024


class CatalogError(ConfigurationError):
    """The file cannot be read as a catalog at all (missing, unknown format, bad header)."""


def text_lines(path: Path, handle: BinaryIO) -> Iterator[str]:
    """The file's lines as text (``\n`` kept), the BOM dropped.

    A byte that is not UTF-8 is kept as a lone surrogate (``surrogateescape``): the row
    holding it is then one invalid row (:func:`not_utf8`), not the whole file. Only the
    header line must be UTF-8. A UTF-16 or UTF-32 byte-order mark selects that encoding
    (a broken code unit reads as U+FFFD, which no path or option matches).
    """
    head = handle.read(4)
    handle.seek(0)
    encoding = next((name for bom, name in _BOMS if head.startswith(bom)), None)
    lines: Iterator[str]
    if encoding is None:
        lines = (
            raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="surrogateescape")
            for number, raw in enumerate(handle, start=1)
        )
    else:
        lines = _decoded_lines(handle, encoding)
    for number, text in enumerate(lines, start=1):
        if number == 1 and not_utf8(text) is not None:
            raise CatalogError(f"{path}: line 1: the header is {not_utf8(text)}")
        if number == 1 and "\x00" in text:
            raise CatalogError(
                f"{path}: line 1: the header holds NUL characters: UTF-16 text with no "
                "byte-order mark? save it as CSV UTF-8"
            )
        yield text


def _decoded_lines(handle: BinaryIO, encoding: str) -> Iterator[str]:
    """The lines of a file in ``encoding``, each ending at ``\n`` (kept) as UTF-8 lines do."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    line: list[str] = []  # the pieces of the line read so far
    for chunk in iter(functools.partial(handle.read, 1 << 16), b""):
        *ends, rest = decoder.decode(chunk).split("\n")
        for end in ends:
            yield "".join([*line, end, "\n"])
            line = []
        line.append(rest)
    last = "".join([*line, decoder.decode(b"", final=True)])
    if last:
        yield last


#: Byte-order marks of the encodings read besides UTF-8 (UTF-32's before UTF-16's,
#: whose little-endian mark begins UTF-32's).
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def not_utf8(text: str) -> str | None:
    """``not UTF-8 text (byte 0xff at character 12)`` when ``text`` was read from bytes
    that are not UTF-8 (see :func:`text_lines`), else None."""
    for index, char in enumerate(text):
        if "\udc80" <= char <= "\udcff":
            return f"not UTF-8 text (byte 0x{ord(char) - 0xDC00:02x} at character {index + 1})"
    return None


# -- reading records ---------------------------------------------------------------


def delimited(
    path: Path, lines: Iterator[str], kind: str, check_header: Callable[[list[str]], None]
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """The records of a CSV or TSV file: ``(line, values)``, or ``(line, problem)`` for
    a record that cannot be read; ``check_header`` raises :class:`CatalogError` for a
    header it refuses (it is given the named columns)."""
    if csv.field_size_limit() < MAX_CELL:
        csv.field_size_limit(MAX_CELL)
    first = next(lines, None)
    if first is None:
        raise CatalogError(f"{path}: the file is empty")
    delimiter = _separator(first, kind)
    source = _Taken(itertools.chain([first], lines), delimiter)
    reader = csv.reader(source, delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except csv.Error as exc:
        raise CatalogError(f"{path}: line 1: {_csv_words(exc)}") from None
    check_header([name for name in header if name])
    # Values past the last named column may be left out (Excel's trailing ",,").
    source.columns = width = 1 + max((i for i, name in enumerate(header) if name), default=0)
    named = f"{width} values ({', '.join(name for name in header if name)})"
    start = len(source.take()) + 1  # the line the next record starts on
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, f"unreadable {kind.upper()}: {_csv_words(exc)}"
            start += len(source.take())
            continue
        except _RowInAValue:
            # This row is bad; the line its open quote ran into is read as a row of its
            # own (the reader starts each record afresh), so no row vanishes.
            yield (
                start,
                (
                    f"unclosed quote: a quoted value opened on this line runs on into line "
                    f"{start + 1}, which looks like a row (read as one); close the quote, or "
                    'double a quote inside a value ("")'
                ),
            )
            source.give_back(source.take()[1:])
            start += 1
            continue
        line, taken = start, source.take()
        start += len(taken)
        if not any(cell.strip() for cell in record):
            continue  # a blank line
        problem = not_utf8("".join(taken))
        if problem is not None:
            yield line, problem
            continue
        yield line, _values(header, record, width, named)


def _separator(header: str, kind: str) -> str:
    """The delimiter of a file whose header line is ``header``: a tab in a TSV; in a CSV
    a comma, else a semicolon (European Excel), else a tab, whichever the header has."""
    if kind == "tsv":
        return "\t"
    return next((sep for sep in (",", ";", "\t") if sep in header), ",")


def _values(header: list[str], record: list[str], width: int, named: str) -> dict[str, str] | str:
    """A record's values by column, or what is wrong with it: too few or too many values
    (empty ones past the last named column do not count), or a value under a column
    with no name."""
    given = len(record)
    while given > width and not record[given - 1].strip():
        given -= 1
    if len(record) < width or given > len(header):
        return f"expected {named}, got {given}"
    # (given <= len(header) here: a shorter row leaves later nameless columns empty)
    for column, (name, cell) in enumerate(zip(header, record[:given], strict=False), start=1):
        if not name and cell.strip():
            return (
                f"column {column} has no name in the header but holds {cell!r:.60}: "
                "name the column in line 1, or empty the cell"
            )
    values = zip(header, record, strict=False)  # a value past the header is empty here
    # A cell of spaces is an empty one: left out (an id of " " named a row of its own,
    # and a repeat with it was paid for again; a seed of " " was refused).
    return {name: cell for name, cell in values if name and cell.strip()}


class _RowInAValue(Exception):
    """A quoted value runs on into a line holding a whole row's delimiters."""


class _Taken:
    """The lines a CSV reader reads, told apart per record; lines given back come again.

    A record's second line and later are inside a quoted value (only a quote carries a
    record over a line break): one with a whole row's delimiters before any quote is a
    row swallowed by an unclosed quote (or one starting with a quote and holding them),
    and raises :class:`_RowInAValue` at once, so a file of open quotes is read in one pass.
    """

    def __init__(self, lines: Iterator[str], delimiter: str) -> None:
        self._lines = lines
        self._delimiter = delimiter
        self._again: collections.deque[str] = collections.deque()
        self._taken: list[str] = []
        self.columns = 0  # known once the header is read

    def __iter__(self) -> _Taken:
        return self

    def __next__(self) -> str:
        line = self._again.popleft() if self._again else next(self._lines)
        self._taken.append(line)
        # The value's text ends at the first quote; one opening the line starts a new
        # quoted value there, as on a row's first line.
        inside = line if line.startswith('"') else line.split('"', 1)[0]
        if (
            self.columns
            and len(self._taken) > 1
            and (inside.count(self._delimiter) >= self.columns - 1)
        ):
            raise _RowInAValue
        return line

    def take(self) -> list[str]:
        """The lines read since the last call."""
        taken, self._taken = self._taken, []
        return taken

    def give_back(self, lines: list[str]) -> None:
        """Read ``lines`` again, before the rest."""
        self._again.extendleft(reversed(lines))


def jsonl(lines: Iterator[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """The records of a JSONL file: ``(line, object)``, or ``(line, problem)``."""
    # Lines end at \n only: JSON strings may hold U+2028 and friends.
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        problem = not_utf8(line)
        if problem is not None:
            yield number, problem
            continue
        try:
            value = json.loads(line, object_pairs_hook=_each_key_once)
        except _RepeatedKey as exc:
            yield number, f"repeated key {exc.args[0]!r} (JSON readers keep the last, silently)"
            continue
        except RecursionError:
            yield number, "not valid JSON: nested too deep to read"
            continue
        except ValueError as exc:
            yield number, f"not valid JSON: {exc}"
            continue
        if not isinstance(value, dict):
            yield number, f"expected a JSON object, got {type(value).__name__}"
            continue
        problem = _text_problem(value)
        if problem is not None:
            yield number, problem
            continue
        yield number, value


class _RepeatedKey(ValueError):
    """A JSON object naming one key twice (``json`` keeps the last, silently)."""


def _each_key_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen.add(key)
    return dict(pairs)


def _text_problem(value: dict[str, Any]) -> str | None:
    """Why a JSON object cannot be kept as UTF-8 text (a lone surrogate such as
    ``"\\ud800"``: JSON may escape one, UTF-8 cannot hold it), or None."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        char = exc.object[exc.start] if isinstance(exc.object, str) else "?"
        return (
            f"not valid text: a lone surrogate \\u{ord(char):04x} (half of a UTF-16 pair) "
            "cannot be sent as UTF-8"
        )
    except RecursionError:
        return "not valid JSON: nested too deep to read"
    return None


def _csv_words(error: csv.Error) -> str:
    """The csv module's complaint in a person's words where it speaks of its own API."""
    text = str(error)
    if "new-line character seen in unquoted field" in text:
        return (
            "a line ends with a lone carriage return (old Mac line ends, or binary data); "
            "save the file with LF or CRLF line ends"
        )
    return text
