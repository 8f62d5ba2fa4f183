"""AsyncFashn: the client's calls, over the parts ``_base_client`` builds."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio

from fashn_async._base_client import BaseClient
from fashn_async._batch import Batch
from fashn_async._coerce import request_from
from fashn_async._events import BatchEvents, BatchProgress, events_from
from fashn_async._models import Credits, Prediction, PredictionStatus, Request
from fashn_async._options import check_batch_input
from fashn_async._results import BatchInput, Result, TryOnResult
from fashn_async._urls import check_url
from fashn_async._validators import check_id, config_bool, config_int, in_range, shorten
from fashn_async.errors import DeadlineExceededError, InvalidRequestError, SubmissionUncertainError

__all__ = ["AsyncFashn"]


class AsyncFashn(BaseClient):
    """The FASHN API client. Use it as ``async with AsyncFashn() as client:``.

    Every option is keyword-only (``AsyncFashn(api_key=..., base_url=..., limits=...)``),
    as httpx's clients take theirs.

    Args:
        api_key: The API key; ``None`` reads ``FASHN_API_KEY``.
        base_url: The API's address (an emulator's, in tests); ``None`` reads
            ``FASHN_BASE_URL``, else ``https://api.fashn.ai``.
        limits: The key's limits, respected by every call of this client together.
        polling: How status polls are planned.
        retry: Retries of GETs and of submissions that cannot have landed.
        timeout: Seconds one HTTP request may take in all.
        connect_timeout: Seconds to establish a connection.
        max_connections: Size of the connection pool.
        proxy: Send every request through this HTTP proxy (``http://host:port``, with
            ``user:password@`` if it needs them). ``None`` leaves it to ``trust_env``.
        trust_env: Honour ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` (and
            ``.netrc``) from the environment; ``NO_PROXY`` by urllib's rules (host
            names and suffixes, no CIDR ranges: README "Proxies").
        verify: The TLS certificates trusted, as httpx's option: ``True`` for the
            system's store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name another), the path
            of a PEM bundle of CA certificates or of a folder of them (trusted instead of
            the system's: a proxy that inspects TLS needs its company's CA), or an
            :class:`ssl.SSLContext`. ``False`` is refused: the API key would go to
            anyone between you and the API. A certificate not trusted raises
            :class:`~fashn_async.errors.CertificateError` at once, nothing sent.
        prepare_images: Prepare image bytes before sending them (needs the ``images``
            extra): an :class:`ImagePreparation`, ``True`` for its defaults, or ``None``
            / ``False`` to send the bytes as given.
        coordination: Share the key's limits (submissions, status budget, in-flight cap)
            with every process using the same Redis server: a ``redis://`` URL or a
            :class:`RedisCoordination`. ``None`` keeps them in this process.

    Raises:
        ConfigurationError: no API key, or a bad option (``verify`` a path with no
            file, or a file with no certificate OpenSSL reads).
        EventLoopError: (on any call) the client is used from an event loop other than
            the one its ``async with`` ran on.
        CoordinationError: (on ``async with``) the Redis server cannot be reached.

    With ``coordination``, any number of processes on any number of hosts using one key
    stay within its limits together: the rolling windows are kept on the Redis server's
    clock, a 429 seen by one process pauses all of them, and the in-flight slots of a
    process that dies come back after ``lease_ttl``. If Redis goes away mid-run, each
    process keeps to its share of the limits until it is back (``RedisCoordination``).
    """

    # -- one prediction ----------------------------------------------------------------

    async def submit(
        self, request: Request | None = None, /, *, webhook_url: str | None = None, **fields: Any
    ) -> Prediction:
        """Submit one prediction and return at once with its id.

        The prediction counts against ``limits.in_flight`` until this client sees it
        finished (``status()`` or ``cancel()``), as the server counts it in progress.
        429 answers (RateLimitExceeded, ConcurrencyLimitExceeded) are waited out and the
        same body sent again: the server counted nothing.

        Args:
            request: A TryOnRequest or ModelRequest; or pass TryOnRequest's fields.
            webhook_url: Where the API POSTs the final status.

        Raises:
            ClientClosedError: not open (``async with``), or closed during the call (aclose).
            EventLoopError: used from an event loop other than the one it was opened on.
            InvalidRequestError: a field or ``webhook_url`` is bad; nothing was sent.
            ImageInputError: an image is a missing file, not an image, or a bad URL or
                data URI; nothing was sent.
            SubmissionUncertainError: the POST may have reached the API and no usable
                answer came back (see the README's decision table); it is not re-sent.
                Raised at once; its in-flight slot stays taken until the prediction
                would likely have ended.
            OutOfCreditsError: final; nothing was created.
            BadRequestError: the API refused the body (400); nothing was created.
            AuthenticationError: the API key was refused (401).
            ServerError: 5xx answers outlasted ``retry.attempts``; nothing was created.
            ConnectError: no connection in ``retry.attempts`` tries; nothing was sent.
        """
        req = request_from(request, fields)
        if webhook_url is not None:
            check_url("webhook_url", webhook_url, error=InvalidRequestError, data_uris=False)
        self._transport.session  # noqa: B018 - fail fast when closed, before encoding
        prepared = await self._engine.prepare(req, webhook_url=webhook_url)
        return Prediction(await self._engine.submit_holding(prepared))

    async def status(self, prediction_id: str) -> PredictionStatus:
        """The prediction's current status (one call, through the shared status budget).

        A failed or canceled prediction is a status, not an error:
        ``status.raise_for_status()`` turns it into its typed error.

        Side effect: a prediction this client's ``submit()`` sent, seen ended here, gives
        its in-flight slot back (the server no longer counts it in progress).

        An error from the API or the network names the prediction asked about
        (``error.prediction_id``).

        Raises:
            ClientClosedError: the client is not open (use ``async with``).
            EventLoopError: used from an event loop other than the one it was opened on.
            InvalidRequestError: ``prediction_id`` is unusable in a URL path (empty,
                ``.`` or ``..``, a ``/`` or a control character: ``_answers.id_problem``);
                nothing is sent.
            NotFoundError: no such prediction, or one too old to be tracked (404).
            AuthenticationError: the API key was refused (401).
            RateLimitError: 429 answers outlasted ``retry.rate_limit_waits``.
            ServerError: 5xx answers outlasted ``retry.attempts``.
            APIError: an answer about another prediction (at once), or 2xx answers
                without a ``status`` or with an ``output`` not null or a list of
                non-empty strings, past ``retry.attempts``.
            TransportError: the network failed ``retry.attempts`` times (ConnectError,
                NetworkTimeoutError or ConnectionDroppedError).
        """
        self._transport.check_loop()
        status = await self._engine.status(check_id(prediction_id))
        if status.done:
            self._engine.in_flight.seen_done(prediction_id)
        return status

    async def cancel(self, prediction_id: str) -> PredictionStatus:
        """Cancel a prediction; best effort on the API's side.

        A prediction that has already ended is left as it is and its status returned.

        An error from the API or the network names the prediction asked about
        (``error.prediction_id``).

        Raises:
            ClientClosedError: the client is not open (use ``async with``).
            EventLoopError: used from an event loop other than the one it was opened on.
            InvalidRequestError: ``prediction_id`` is unusable in a URL path (empty,
                ``.`` or ``..``, a ``/`` or a control character: ``_answers.id_problem``);
                nothing is sent.
            NotFoundError: no such prediction, or one too old to be tracked (404).
            AuthenticationError: the API key was refused (401).
            ServerError: 5xx answers outlasted ``retry.attempts``.
            APIError: an answer about another prediction (at once), or 2xx answers
                without a ``status`` or with an ``output`` not null or a list of
                non-empty strings, past ``retry.attempts``.
            TransportError: the network failed ``retry.attempts`` times (ConnectError,
                NetworkTimeoutError or ConnectionDroppedError).
        """
        self._transport.check_loop()
        return await self._engine.cancel(check_id(prediction_id))

    async def wait(self, prediction_id: str, *, cancel_on_exit: bool = True) -> PredictionStatus:
        """Poll a submitted prediction until it is terminal; return its final status.

        For predictions submitted earlier, by ``submit()`` or by another process (a
        resumed job, say). It counts against ``limits.in_flight`` while polled. The final
        status is returned whatever it is; ``status.raise_for_status()`` turns a failure
        into its typed error.

        Args:
            prediction_id: The prediction's id.
            cancel_on_exit: Cancel the prediction on the server if this call is cancelled.

        Raises:
            ClientClosedError: not open (``async with``), or closed during the call (aclose).
            EventLoopError: used from an event loop other than the one it was opened on.
            InvalidRequestError: ``prediction_id`` is unusable in a URL path (empty,
                ``.`` or ``..``, a ``/`` or a control character: ``_answers.id_problem``);
                nothing is sent.
            ConfigurationError: ``cancel_on_exit`` is not a bool.
            PollingError: a status call failed for good, after its retries (its
                ``__cause__``: NotFoundError when there is no such prediction or it is
                too old to be tracked, 404, not retried; AuthenticationError;
                RateLimitError past ``retry.rate_limit_waits``; ServerError or
                TransportError past ``retry.attempts``; APIError for an answer that is
                not this prediction's status, or whose ``output`` is not null or a list
                of non-empty strings); the prediction is not cancelled.
        """
        self._transport.check_loop()
        config_bool("cancel_on_exit", cancel_on_exit)
        return await self._engine.wait_existing(check_id(prediction_id), cancel=cancel_on_exit)

    async def credits(self) -> Credits:
        """The account's credit balance.

        Raises:
            ClientClosedError: the client is not open (use ``async with``).
            EventLoopError: used from an event loop other than the one it was opened on.
            AuthenticationError: the API key was refused (401).
            APIError: the answer is not a credits object, or a balance is no finite number.
            RateLimitError: 429 answers outlasted ``retry.rate_limit_waits``.
            ServerError: 5xx answers outlasted ``retry.attempts``.
            TransportError: the network failed ``retry.attempts`` times.
        """
        self._transport.check_loop()
        response = await self._engine.get("/v1/credits", limiter=None)
        return Credits.from_answer(response.data)

    async def run(
        self,
        request: Request | None = None,
        /,
        *,
        deadline: float | None = None,
        **fields: Any,
    ) -> TryOnResult:
        """Submit, wait for the end, return the result or raise its typed error.

        Cancelling the awaiting task cancels the prediction on the server (shielded,
        best effort) and leaves nothing running.

        Args:
            request: A TryOnRequest or ModelRequest; or pass TryOnRequest's fields.
            deadline: Seconds to wait in all; then the prediction is cancelled remotely
                and DeadlineExceededError raised.

        Raises:
            PredictionError: the prediction failed (its subclass names the reason:
                PoseError, ImageLoadError, ..., UnknownPredictionError).
            PredictionCanceledError: it was canceled.
            DeadlineExceededError: the deadline ran out; a cancel was sent to the
                prediction (best effort), which ``error.prediction_id`` names (None: none
                was created).
            InvalidRequestError: the request or ``deadline`` fails validation; nothing
                was sent.
            ImageInputError: an image is a missing file, not an image, or a bad URL or
                data URI; nothing was sent.
            ClientClosedError: not open (``async with``), or closed during the call (aclose).
            EventLoopError: used from an event loop other than the one it was opened on.
            SubmissionUncertainError: the POST went out and no usable answer came back
                (before the deadline, if one ran out first); the prediction may exist and
                be charged, so it is not re-sent.
            OutOfCreditsError: final; nothing was created.
            BadRequestError: the API refused the body (400); nothing was created.
            AuthenticationError: the API key was refused (401); nothing was created.
            RateLimitError: 429 answers to the POST outlasted
                ``retry.rate_limit_waits``; nothing was created.
            ServerError: 5xx answers to the POST outlasted ``retry.attempts``; nothing
                was created.
            ConnectError: no connection ``retry.attempts`` times; nothing was sent.
            PollingError: the prediction was created and its status calls kept failing
                (5xx, 429, the network, or 404: no longer tracked); it is not cancelled
                (it may be done, and charged): ``error.prediction_id`` names it, and
                ``client.wait(error.prediction_id)`` collects it later.
        """
        req = request_from(request, fields)
        if deadline is not None and not in_range(deadline, 0.0, open_low=True):
            raise InvalidRequestError(
                "deadline must be a finite number of seconds above 0, or None for none; "
                f"got {shorten(deadline)}"
            )
        self._transport.session  # noqa: B018 - fail fast when closed
        created: list[str] = []
        unanswered = False  # a POST is out whose answer has not shown that nothing exists

        def sending() -> None:
            nonlocal unanswered
            unanswered = True

        def not_created() -> None:
            nonlocal unanswered
            unanswered = False

        with anyio.move_on_after(deadline or float("inf")) as scope:  # (preparing too)
            prepared = await self._engine.prepare(req)
            status = await self._engine.submit_and_wait(
                prepared,
                on_sending=sending,
                on_submitted=created.append,
                on_not_created=not_created,
            )
        if scope.cancelled_caught:
            if unanswered and not created:
                raise SubmissionUncertainError(
                    f"the deadline of {deadline:g} s ran out before POST /v1/run had a usable "
                    "answer; the prediction may exist and be charged, so it is not re-sent"
                )
            raise DeadlineExceededError(
                f"no result within the deadline of {deadline:g} s"
                + ("" if created else " (no prediction was created)"),
                prediction_id=created[-1] if created else None,
            )
        status.raise_for_status()
        return TryOnResult(
            id=status.id, output=status.output or (), request=req, transport=self._transport
        )

    # -- many --------------------------------------------------------------------------

    def batch(
        self,
        requests: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        events: BatchEvents | None = None,
        raise_on_error: bool = False,
        max_pending: int | None = None,
        cancel_on_exit: bool = True,
        on_progress: Callable[[BatchProgress], object] | None = None,
        on_sending: Callable[[int], object] | None = None,
        on_submitted: Callable[[int, str], object] | None = None,
        on_not_created: Callable[[int], object] | None = None,
    ) -> Batch:
        """Run many requests: ``async for result in client.batch(...)`` yields each as done.

        The batch is one stream, never restarted: each item is read once and submitted
        at most once, each index yielded once, whether it is driven by ``async for``,
        ``anext()``, a second ``async for`` after a ``break`` (which continues it),
        ``async with`` or several tasks at once. Nothing starts before the first
        ``anext()`` or ``async with``. Its tasks run in a task group this client owns.

        Leaving: ``aclose()``, the end of ``async with client.batch(...) as b``, and
        closing the client cancel every running prediction on the server at once and
        return when that is done; the batch is then closed (iterating it raises
        BatchClosedError). ``break`` (or an exception, or cancellation) out of ``async for
        r in client.batch(...)`` frees the batch, which closes it the same way at once on
        CPython, even if the exception is kept; a batch kept in a variable stays open
        (after a ``break`` or a cancellation) for the next ``async for`` and keeps at most
        ``max_pending`` items going until it is closed. A cancelled ``aclose()`` still
        finishes all that before raising CancelledError.

        A bad item (of no accepted type, with unknown or missing fields, or a value that
        fails validation) is a failed result whose InvalidRequestError names its index.

        Args:
            requests: Any iterable or async iterable of TryOnRequest, ModelRequest,
                ``Prediction`` (submitted earlier: polled, never submitted again), dicts
                of request fields, or ``(model_image, garment_image, category)`` tuples;
                read lazily, in this client's event loop. A generator that raises (an
                Exception, or a CancelledError while nothing cancels the batch) ends the
                batch with BatchInputError once the items read before have finished.
            events: A :class:`BatchEvents` told of each step (a journal, a display).
            raise_on_error: Raise the first failure instead of yielding it (the batch is
                closed first).
            max_pending: Items read and not yet taken by the consumer, at most
                (default: twice ``limits.in_flight``, or 64 without that limit).
            cancel_on_exit: Leaving early cancels running predictions on the server; with
                False they are left running (resume them by passing ``Prediction(id)``
                items to a later batch).
            on_progress: Shorthand for ``BatchEvents.progress`` (not with ``events``).
            on_sending: Shorthand for ``BatchEvents.sending`` (not with ``events``).
            on_submitted: Shorthand for ``BatchEvents.submitted`` (not with ``events``).
            on_not_created: Shorthand for ``BatchEvents.not_created`` (not with ``events``).

        An item that is a :class:`Prediction` was submitted earlier: it is polled to its
        end, never submitted again. A failed item is a value (``result.error``: any of
        the errors of :meth:`run` for one item; InvalidRequestError naming the item's
        index for a bad item), never the end of the batch.

        Raises:
            InvalidRequestError: ``requests`` is not an iterable of items; nothing was
                read or sent.
            ConfigurationError: an option (``max_pending``, ``events``, a hook,
                ``raise_on_error`` or ``cancel_on_exit`` not a bool) is bad.
            ClientClosedError: the client is not open.
            OutOfCreditsError: in the loop, after the results of the items already
                running: a submission was refused for lack of credits, so nothing more
                is read.
            BatchInputError: in the loop, likewise: the input iterable raised (its
                exception is ``__cause__``).
            EventHookError: in the loop, likewise: a hook of ``events`` raised.
            BatchClosedError: the batch is iterated after it was closed.
            EventLoopError: the batch is iterated on another event loop (nothing starts).
            FashnError: with ``raise_on_error``, the first failed item's error, in the loop.
        """
        self._transport.session  # noqa: B018 - fail fast when closed
        check_batch_input(requests)
        config_bool("raise_on_error", raise_on_error)
        config_bool("cancel_on_exit", cancel_on_exit)
        if max_pending is not None:
            config_int("max_pending", max_pending)
        events = events_from(
            events,
            on_progress=on_progress,
            on_sending=on_sending,
            on_submitted=on_submitted,
            on_not_created=on_not_created,
        )
        if max_pending is None:
            max_pending = 2 * (self.limits.in_flight or 32)
        return Batch(
            self._batches,
            self._engine,
            requests,
            raise_on_error=raise_on_error,
            events=events,
            max_pending=max_pending,
            cancel_on_exit=cancel_on_exit,
        )

    async def save(
        self, result: Result, directory: str | Path, *, stem: str | None = None
    ) -> list[Path]:
        """``result.save(directory, stem=stem)``, of which this is only another spelling.

        Raises:
            SaveError: a file or folder could not be written (a DownloadError).
            DownloadError: an output could not be fetched.
        """
        return await result.save(directory, stem=stem)
