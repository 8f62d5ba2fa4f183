"""Finished try-ons: their outputs, and saving them to disk."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import attrs

from fashn_async._models import Prediction, Request
from fashn_async._outputs import save_output
from fashn_async._validators import encodable, shorten
from fashn_async.errors import FashnError, InvalidRequestError

if TYPE_CHECKING:
    from fashn_async._http import Transport

__all__ = ["BatchInput", "BatchResult", "Result", "TryOnResult"]

#: What one batch item may be: a request, a dict of TryOnRequest fields (or of
#: ``model_name``/``inputs``), a ``(model_image, garment_image, category)`` tuple, or a
#: :class:`Prediction` submitted earlier, which is polled and never submitted again.
BatchInput = Request | Prediction | Mapping[str, Any] | tuple[Any, ...]


def _check_save_args(directory: Any, stem: Any) -> None:
    """``directory`` a str or ``os.PathLike`` text path, ``stem`` None or text.

    Raises:
        InvalidRequestError: naming the argument, the value (shortened) and what is
            accepted; nothing is downloaded or written.
    """
    path = directory
    if isinstance(directory, os.PathLike):
        path = os.fspath(directory)
    if not isinstance(path, str) or not path:
        raise InvalidRequestError(
            "save(directory): must be a folder as a non-empty str or pathlib.Path, "
            f"got {shorten(directory)}"
        )
    if "\0" in path or not encodable(path):
        raise InvalidRequestError(
            "save(directory): a path cannot hold a NUL character or a lone surrogate, "
            f"got {shorten(directory)}"
        )
    if stem is not None and (not isinstance(stem, str) or not encodable(stem)):
        raise InvalidRequestError(f"save(stem): must be None or text, got {shorten(stem)}")
    problem = None if stem is None else stem_problem(stem)
    if problem is not None:
        raise InvalidRequestError(
            f"save(stem): must name files in one folder as given, got {shorten(stem)}: {problem}"
        )


#: Characters no file name holds on one system or another: ``/`` (and NUL) nowhere on
#: POSIX, the rest on Windows. Refused everywhere, so a stem names the same files on each.
_NOT_IN_NAMES = frozenset('/\\<>:"|?*')
#: Longest stem, in UTF-8 bytes: file names are at most 255 bytes (ext4, APFS, NTFS in
#: UTF-16 units), and ``.<stem>_<n>.<ext>.part``, the file written first, adds up to 20.
MAX_STEM_BYTES = 200


def stem_problem(stem: str) -> str | None:
    """Why ``stem`` cannot name output files exactly as given, or None. A stem is never
    rewritten: two stems rewritten alike (``.`` and ``..``, ``a/b`` and ``a_b``) would
    write the same file, the second save replacing the first."""
    if not stem.strip():
        return "empty"
    if stem in (".", ".."):
        return "a dot segment, which names a folder"
    if _NOT_IN_NAMES.intersection(stem):
        return 'a file name cannot hold / \\ < > : " | ? *'
    if not stem.isprintable():
        return "it holds a control or invisible character"
    if stem[-1] in ". ":
        return "it ends in a dot or a space, which Windows drops from file names"
    if len(stem.encode()) > MAX_STEM_BYTES:
        return f"{len(stem.encode())} bytes in UTF-8, over {MAX_STEM_BYTES}"
    return None


def _default_stem(prediction_id: str) -> str:
    """The id as it is when it can name files, else (an id of the API's own holding a
    ``:``, say) a rewrite of it with its hash, so two ids never share a name."""
    if stem_problem(prediction_id) is None:
        return prediction_id
    digest = hashlib.sha256(prediction_id.encode(errors="surrogatepass")).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', prediction_id)[:64].strip('._ ')}_{digest}"


async def save_outputs(
    transport: Transport | None,
    outputs: Sequence[str],
    directory: str | Path,
    stem: str,
) -> list[Path]:
    """Write every output into ``directory`` concurrently; return the paths in order."""
    directory = Path(directory)
    paths: list[Path | None] = [None] * len(outputs)

    async def one(session: aiohttp.ClientSession, index: int, source: str) -> None:
        paths[index] = await save_output(session, source, directory, stem, index)

    async def all_of(session: aiohttp.ClientSession) -> None:
        async with anyio.create_task_group() as tg:
            for index, source in enumerate(outputs):
                tg.start_soon(one, session, index, source)

    session = None
    if transport is not None:
        try:
            session = transport.session
        except FashnError:
            session = None
    try:
        if session is not None:
            await all_of(session)
        elif transport is not None:  # closed, or another loop's: one like it, short-lived
            async with transport.new_session() as own:
                await all_of(own)
        else:  # a result built by hand: aiohttp's defaults (environment proxies honoured)
            async with aiohttp.ClientSession(trust_env=True) as own:
                await all_of(own)
    except BaseExceptionGroup as group:  # one failed download: raise it, not a group
        first = group.exceptions[0]
        raise first from first.__cause__  # its own cause kept (an OSError, say)
    return [path for path in paths if path is not None]


@attrs.frozen(kw_only=True)
class Result:
    """What every finished try-on has: its outputs, and saving them.

    The base of :class:`TryOnResult` (from ``run()``) and :class:`BatchResult` (from
    ``batch()``); one :meth:`save` serves both.

    Attributes:
        output: Output URLs, or data URIs with ``return_base64`` (empty on failure).
    """

    output: tuple[str, ...]
    _transport: Any = attrs.field(default=None, repr=False, eq=False, alias="transport")

    def _stem(self) -> str:
        """The file name stem when ``save()`` is given none."""
        raise NotImplementedError

    async def save(self, directory: str | Path, *, stem: str | None = None) -> list[Path]:
        """Download every output into ``directory`` (created if needed), concurrently.

        Files are named ``<stem>_<n>.<ext>`` and written whole or not at all. ``stem``
        defaults to the prediction id (``TryOnResult``) or the zero-padded index
        (``BatchResult``); one given is used exactly as given, never rewritten (at most
        200 UTF-8 bytes; no ``/ \\ < > : " | ? *``, control characters, ``.``, ``..``, or
        a trailing dot or space). Works on a closed client too, or from another event loop,
        with a short-lived session made as the client's is (its proxy, ``trust_env``,
        timeouts and User-Agent: ``Transport.new_session``).

        Returns:
            The paths written, one per output, in output order.

        Raises:
            SaveError: a file or folder could not be written (``directory`` is a file, a
                folder has an output's name, no permission, no room); ``.path`` names it.
                It is a DownloadError, so ``except DownloadError`` catches both.
            DownloadError: an output could not be fetched.
            InvalidRequestError: ``directory`` is not a str or ``os.PathLike`` text path
                (``None``, ``5``, ``b"/p"``, a NUL inside), or ``stem`` is not text or
                cannot name files as given (:func:`stem_problem` says why).
        """
        _check_save_args(directory, stem)
        return await save_outputs(self._transport, self.output, directory, stem or self._stem())


@attrs.frozen(kw_only=True)
class TryOnResult(Result):
    """A completed prediction: its id and outputs (URLs, or data URIs with return_base64)."""

    id: str
    output: tuple[str, ...]
    request: Request | None = attrs.field(default=None, repr=False)

    def _stem(self) -> str:
        return _default_stem(self.id)


@attrs.frozen(kw_only=True)
class BatchResult(Result):
    """One input of a batch, finished: ``output`` on success, else ``error``.

    Attributes:
        index: Position of the item in the batch's input.
        request: The item exactly as given, the same object, whatever its type (a
            dict or tuple is not replaced by the request it was read as; a bad item is
            there too); ``index`` also matches results to inputs.
        prediction_id: The prediction's id, once one was created.
        output: Output URLs or data URIs (empty on failure).
        error: The typed exception of a failure, or None.
    """

    index: int
    request: BatchInput
    prediction_id: str | None = None
    output: tuple[str, ...] = ()
    error: FashnError | None = None

    @property
    def ok(self) -> bool:
        """True when the try-on completed."""
        return self.error is None

    def _stem(self) -> str:
        return f"{self.index:06d}"
