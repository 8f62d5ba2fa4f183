"""Bulk jobs: a catalog of try-ons through the API, resumable after any crash.

``fashn-async batch catalog.csv --out results/`` is built from these parts:

- :func:`load_catalog` reads a CSV/TSV/JSONL catalog and validates every row, keeping
  bad rows with their line numbers (:func:`iter_catalog`: the same, as a stream);
- :class:`Journal` is the SQLite file in the output folder that records every step of
  every row before and after each network call;
- :class:`BulkJob` runs the rows through ``AsyncFashn.batch`` (resuming what the journal
  says was submitted, never re-sending what may have landed) and downloads the outputs;
- :func:`write_manifest` and :func:`write_report` write ``manifest.jsonl`` and the
  self-contained ``report.html`` from the journal.
"""

from fashn_async.bulk._catalog import Catalog, CatalogRow, iter_catalog, load_catalog
from fashn_async.bulk._job import BulkJob
from fashn_async.bulk._journal import Journal
from fashn_async.bulk._manifest import write_manifest
from fashn_async.bulk._outcome import Display, JobOptions, JobSummary
from fashn_async.bulk._records import CatalogError
from fashn_async.bulk._report import render_report, write_report
from fashn_async.bulk._rows import (
    JournalBusyError,
    JournalMismatchError,
    JournalWriteError,
    RowRecord,
    State,
)

__all__ = [
    "BulkJob",
    "Catalog",
    "CatalogError",
    "CatalogRow",
    "Display",
    "JobOptions",
    "JobSummary",
    "Journal",
    "JournalBusyError",
    "JournalMismatchError",
    "JournalWriteError",
    "RowRecord",
    "State",
    "iter_catalog",
    "load_catalog",
    "render_report",
    "write_manifest",
    "write_report",
]
