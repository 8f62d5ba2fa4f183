"""``report.html``: one self-contained page with every row, its images and its outcome.

Up to :data:`EMBED_ROWS` rows, thumbnails are small JPEGs embedded as data URIs, each
distinct image once (as a CSS class): the page is one file that needs nothing else.
Beyond, the embedded images would make the page hundreds of megabytes, so it links
them relatively from ``thumbs/`` instead and the browser loads them lazily. Full-size
outputs are linked relatively. Everything that comes from the input (values, paths,
labels, error messages) is HTML-escaped, and a Content-Security-Policy forbids scripts
and anything remote.
"""

from __future__ import annotations

import html
import statistics
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from fashn_async._atomic import write_atomically
from fashn_async._images import is_data_uri, to_data_uri
from fashn_async.bulk._catalog import CatalogRow
from fashn_async.bulk._rows import RowRecord, State
from fashn_async.bulk._thumbs import THUMBS_DIR, Thumb, thumbnails

__all__ = ["REPORT_NAME", "render_report", "write_report"]

REPORT_NAME = "report.html"
#: Up to this many rows the thumbnails are embedded; beyond, linked from thumbs/.
EMBED_ROWS = 1000
_CSP = "default-src 'none'; img-src data:{}; style-src 'unsafe-inline'"
_ORDER = (
    State.DONE, State.CANCELED, State.FAILED, State.INVALID, State.UNCERTAIN, State.COMPLETED,
    State.SUBMITTED, State.SUBMITTING, State.PENDING,
)  # fmt: skip
_STYLE = """
:root{--ink:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--done:#12805c;
--failed:#c4320a;--invalid:#b54708;--uncertain:#6941c6;--other:#475467}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif;color:var(--ink);background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:24px 32px}
h1{margin:0 0 4px;font-size:22px}h2{font-size:16px;margin:28px 32px 10px}
.sub{color:var(--muted);margin:0 0 16px;word-break:break-all}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid var(--line);
border-radius:10px;padding:10px 16px;min-width:112px;background:#fff}
.card b{display:block;font-size:24px}.card.done b{color:var(--done)}
.card.failed b{color:var(--failed)}.card.invalid b{color:var(--invalid)}
.card.uncertain b{color:var(--uncertain)}.card.canceled b{color:var(--other)}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:16px 0 0;
color:var(--muted)}dt{font-weight:600;color:var(--ink)}dd{margin:0}
table{border-collapse:collapse;margin:0 32px 32px;background:#fff;border:1px solid
var(--line);border-radius:10px;width:calc(100% - 64px)}
th,td{padding:10px 12px;border-bottom:1px solid var(--line);text-align:left;
vertical-align:top}th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;
color:var(--muted);background:#fafbfc}
.num{white-space:nowrap;color:var(--muted)}.num b{color:var(--ink);font-size:15px}
.imgs{display:flex;gap:6px;flex-wrap:wrap}.th{width:132px;height:165px;border-radius:8px;
border:1px solid var(--line);background:#eef0f3 center/contain no-repeat}
.none{display:flex;align-items:center;justify-content:center;text-align:center;
color:var(--muted);font-size:12px;padding:8px;word-break:break-all}
.cap{display:block;max-width:132px;color:var(--muted);font-size:12px;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}
.badge{display:inline-block;border-radius:99px;padding:1px 10px;font-size:12px;
font-weight:600;color:#fff;background:var(--other)}.badge.done{background:var(--done)}
.badge.failed{background:var(--failed)}.badge.invalid{background:var(--invalid)}
.badge.uncertain{background:var(--uncertain)}
.err{margin-top:6px;max-width:420px;word-break:break-word}.err b{color:var(--failed)}
.pid{font:12px ui-monospace,monospace;color:var(--muted);word-break:break-all;margin-top:4px}
.cat{display:inline-block;margin-top:6px;border:1px solid var(--line);border-radius:6px;
padding:0 6px;color:var(--ink);font-size:12px}.opt{font-size:12px;max-width:160px;
overflow-wrap:anywhere}
"""


def write_report(
    directory: Path,
    records: Sequence[RowRecord],
    rows: Mapping[int, CatalogRow],
    *,
    title: str,
    runs: Sequence[tuple[float, float | None, str | None]],
    embed: bool | None = None,
    time_scale: float = 1.0,
) -> Path:
    """Render the report of ``records`` into ``directory/report.html`` (atomically).

    Args:
        rows: The catalog row of each record, by its journal row number (a record whose
            row left the catalog has none).
        time_scale: The emulator's time factor (1: the real API); see :func:`render_report`.
    """
    page = render_report(
        directory, records, rows, title=title, runs=runs, embed=embed, time_scale=time_scale
    )
    return write_atomically(directory / REPORT_NAME, page)


def render_report(
    directory: Path,
    records: Sequence[RowRecord],
    rows: Mapping[int, CatalogRow],
    *,
    title: str,
    runs: Sequence[tuple[float, float | None, str | None]],
    embed: bool | None = None,
    time_scale: float = 1.0,
) -> str:
    """The report page as a string (see the module docstring).

    Args:
        embed: Embed the thumbnails (default: when there are at most EMBED_ROWS rows).
        time_scale: The time factor of an emulator run with ``--time-scale`` (1: the real
            API). Throughput and latencies are then given in API time, comparable with
            the API's limits (25 submissions a minute), and say so; time spent is real.
    """
    embed = len(records) <= EMBED_ROWS if embed is None else embed
    sources: list[Path | str] = []
    for record in records:
        row = rows.get(record.row)
        for column in ("model_image", "garment_image"):
            source = row.images.get(column) if row is not None else None
            if isinstance(source, Path) or (isinstance(source, str) and is_data_uri(source)):
                sources.append(source)
        sources += [directory / name for name in record.files]
    thumbs = _Thumbs(thumbnails(sources, directory), directory, embed=embed)
    counts = Counter(record.state for record in records)
    # With the rows a run left ``submitted`` after their polling gave up (an error is
    # noted): created, maybe charged, not collected yet.
    failures = [r for r in records if r.state in State.NOT_DONE or _gave_up(r)]
    parts = [_header(title, records, counts, runs, time_scale)]
    if failures:
        parts.append(f"<h2>Not done ({len(failures)})</h2>")
        parts.append("<table><tr><th>row</th><th>status</th><th>error</th></tr>")
        parts += [
            f"<tr><td class=num><b>{r.position or '-'}</b> line {r.line}</td>"
            f"<td>{_badge(r.state)}</td>"
            f"<td>{_error(r)}</td></tr>"
            for r in failures
        ]
        parts.append("</table>")
    parts.append(f"<h2>All rows ({len(records)})</h2><table>")
    parts.append(
        "<tr><th>row</th><th>model</th><th>garment</th><th>result</th><th>status</th></tr>"
    )
    for record in records:
        parts.append(_row(record, rows.get(record.row), directory, thumbs))
    parts.append("</table></body></html>\n")
    head = [  # after the body: the embedded thumbnails are known once it is drawn
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="Content-Security-Policy" content="{thumbs.csp}">',
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>Try-on report: {_e(title)}</title>",
        f"<style>{_STYLE}{thumbs.css()}</style></head><body>",
    ]
    return "\n".join(head + parts)


def _header(
    title: str,
    records: Sequence[RowRecord],
    counts: Mapping[str, int],
    runs: Sequence[tuple[float, float | None, str | None]],
    time_scale: float = 1.0,
) -> str:
    # Done and every state of the "Not done" table always, zeros too; the rest when some.
    shown = (State.DONE, *State.NOT_DONE)
    cards = f"<div class='card'><b>{len(records)}</b>rows</div>" + "".join(
        f"<div class='card {state}'><b>{counts.get(state, 0)}</b>{state}</div>"
        for state in _ORDER
        if counts.get(state) or state in shown
    )
    api = "" if time_scale == 1.0 else " of API time"
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    facts: list[tuple[str, str]] = []
    if runs:
        facts.append(("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(runs[0][0]))))
        spent = sum((end or start) - start for start, end, _ in runs)
        killed = sum(1 for _, end, _ in runs if end is None)
        note = f" ({killed} killed: their time is not counted)" if killed else ""
        facts.append(("runs", f"{len(runs)}{note}"))
        facts.append(("time spent", _seconds(spent)))
        if time_scale != 1.0:
            facts.append(
                ("API time", f"{_seconds(spent / time_scale)}: the emulator ran time "
                 f"x{1 / time_scale:g}; throughput and latencies below are in API time")
            )  # fmt: skip
        if spent > 0 and counts.get(State.DONE):
            rate = counts[State.DONE] / (spent / time_scale) * 60
            facts.append(("throughput", f"{rate:.1f} done per minute{api}"))
    latencies = [
        (r.finished_at - r.submitted_at) / time_scale
        for r in records
        if r.state == State.DONE and r.finished_at and r.submitted_at
    ]
    if latencies:
        p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0]
        facts.append(
            ("submitted to finished", f"median {_seconds(statistics.median(latencies))}, "
             f"p95 {_seconds(p95)}{api}")
        )  # fmt: skip
    listing = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return (
        f"<header><h1>Try-on report</h1><p class=sub>{_e(title)} · generated {generated}</p>"
        f"<div class=cards>{cards}</div><dl>{listing}</dl></header>"
    )


class _Thumbs:
    """How each thumbnail appears: a CSS class with a data URI, or a lazy <img>."""

    def __init__(self, made: Mapping[Path | str, Thumb], directory: Path, *, embed: bool) -> None:
        self._made = made
        self._directory = directory
        self._embed = embed
        self._classes: dict[Path | str, int] = {}
        self.csp = _CSP.format("" if embed else " 'self'")

    def box(self, source: Path | str | None, caption: str) -> str | None:
        """The element showing ``source``, or None when there is no preview."""
        thumb = self._made.get(source) if source is not None else None
        if thumb is None or source is None:
            return None
        if isinstance(thumb, Path) and not self._embed:
            link = f"{THUMBS_DIR}/{quote(thumb.name)}"
            return f"<img class=th loading=lazy src='{_e(link)}' alt='{_e(caption)}'>"
        number = self._classes.setdefault(source, len(self._classes))
        return f"<div class='th i{number}' role=img aria-label='{_e(caption)}'></div>"

    def css(self) -> str:
        """The CSS classes of the embedded thumbnails (call after every box())."""
        rules = []
        for source, number in self._classes.items():
            thumb = self._made[source]
            data = thumb.read_bytes() if isinstance(thumb, Path) else thumb
            if data is not None:
                uri = to_data_uri("image/jpeg", data).decode("ascii")
                rules.append(f'.i{number}{{background-image:url("{uri}")}}\n')
        return "".join(rules)


def _row(record: RowRecord, row: CatalogRow | None, directory: Path, thumbs: _Thumbs) -> str:
    images = row.images if row is not None else {}

    def image(source: Path | str | None, caption: str, link: str | None = None) -> str:
        if source is None and not caption:
            return "<div class='th none'>—</div>"
        box = thumbs.box(source, caption)
        if box is None:
            box = f"<div class='th none'>{_e(caption)}<br>(no preview)</div>"
        if link is not None:
            box = f"<a href='{_e(quote(link))}'>{box}</a>"
        return f"<div>{box}<span class=cap title='{_e(caption)}'>{_e(caption)}</span></div>"

    def given(column: str) -> str:
        value = str(record.inputs.get(column, ""))
        if is_data_uri(value):
            return value[:24] + "..."
        return value if value.startswith(("http://", "https://")) else value.rsplit("/", 1)[-1]

    label = f"<br>{_e(record.label)}" if record.label else ""
    options = "".join(
        f"<div class=opt>{_e(name)}: {_e(value)}</div>" if name != "category" else
        f"<div class=cat>{_e(value)}</div>"
        for name, value in record.inputs.items()
        if name not in ("model_image", "garment_image", "id")
    )  # fmt: skip
    outputs = [image(directory / name, name, link=name) for name in record.files]
    pid = f"<div class=pid>{_e(record.prediction_id)}</div>" if record.prediction_id else ""
    error = f"<div class=err>{_error(record)}</div>" if record.error_name else ""
    return (
        f"<tr><td class=num><b>{record.position or '-'}</b><br>line {record.line}{label}"
        f"{options}</td>"
        f"<td>{image(images.get('model_image'), given('model_image'))}</td>"
        f"<td>{image(images.get('garment_image'), given('garment_image'))}</td>"
        f"<td><div class=imgs>{''.join(outputs) or image(None, '')}</div></td>"
        f"<td>{_badge(record.state)}{pid}{error}</td></tr>"
    )


def _gave_up(record: RowRecord) -> bool:
    """A row left ``submitted`` after its polling gave up (its error is noted)."""
    return record.state == State.SUBMITTED and record.error_name is not None


def _error(record: RowRecord) -> str:
    hint = " (not collected yet: run the same command again)" if _gave_up(record) else ""
    return f"<b>{_e(record.error_name or '')}</b> {_e(record.error_message or '')}{hint}"


def _badge(state: str) -> str:
    return f"<span class='badge {_e(state)}'>{_e(state)}</span>"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"
