"""The submitter: in-flight slot, submit window, and the cancel-safe POST /v1/run.

What to do about each answer is not decided here but by ``_decisions.decide`` (the one
table every request path reads); this module does what it says, and keeps the submit
limiter's books by ``_decisions.counted_by_server``, the rule the GET path uses too: a
request that never left, or that the API refused with its own 429, is given back to the
window, as the server did not count it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

import anyio

from fashn_async._answers import id_problem
from fashn_async._decisions import Action, Tries, counted_by_server, decide, unexpected
from fashn_async._http import Response, Transport, outcome_of
from fashn_async._inflight import InFlight
from fashn_async._limits import RateLimiter
from fashn_async._payload import Prepared
from fashn_async._redact import safe_repr
from fashn_async._retry import RetryPolicy
from fashn_async._shield import outlive_cancels
from fashn_async.errors import FashnError, SubmissionUncertainError, TransportError

logger = logging.getLogger("fashn_async")

__all__ = ["Submitter"]


class Submitter:
    """Sends POST /v1/run within the submit window, never twice where one may exist.

    Args:
        transport: The client's HTTP transport.
        limiter: The submit window (``None``: no client-side limit).
        in_flight: The owner of in-flight slots (a bare submit's is held there).
        retry: Counts and waits for what the decision table lets repeat.
        cancel_quietly: Best-effort remote cancel, for a prediction created while the
            caller was being cancelled.
        uncertain_hold: Seconds (given the request) a prediction whose POST went
            unanswered may run: its caller's in-flight slot stays taken that long after
            the error is raised (:meth:`uncertain_until`), as the server counts it in
            progress (else the next POST meets ConcurrencyLimitExceeded). ``None``: no
            hold.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        limiter: RateLimiter | None,
        in_flight: InFlight,
        retry: RetryPolicy,
        cancel_quietly: Callable[[str], Awaitable[None]],
        uncertain_hold: Callable[[Prepared], float] | None = None,
    ) -> None:
        self.transport = transport
        self.limiter = limiter
        self.in_flight = in_flight
        self.retry = retry
        self._cancel_quietly = cancel_quietly
        self._uncertain_hold = uncertain_hold
        self._rng = random.Random()  # noqa: S311 - jitter only

    @safe_repr
    def __repr__(self) -> str:
        return f"<Submitter {self.in_flight!r} limiter={self.limiter!r}>"

    async def post_run(
        self,
        prepared: Prepared,
        *,
        on_sending: Callable[[], Awaitable[None] | None] | None = None,
        on_not_created: Callable[[], None] | None = None,
        on_created: Callable[[str], None] | None = None,
        may_cancel: Callable[[str], bool] | None = None,
        on_uncertain: Callable[[], None] | None = None,
    ) -> str:
        """POST /v1/run through the submit limiter; re-send only where nothing exists.

        Hooks for a journal, each called synchronously: ``on_sending`` once the limiter
        admits the request, right before each send (from then on it may exist; an
        awaitable it returns is awaited before the send, so a journal can write off the
        event loop, and if the hook fails nothing is sent and the grant is given back);
        ``on_not_created`` when the answer proves it does not (before waiting to send
        again, or raising); ``on_created`` with the id, as soon as it is known -- even
        when we are being cancelled and the new prediction is about to be cancelled too
        (unless ``may_cancel``, asked with its id then, says no: it is left running).
        ``on_uncertain`` right before the call ends with the prediction's existence
        unknown: as SubmissionUncertainError is raised, or as a cancel that came while
        the POST was on the wire ends it (a plain ``CancelledError``, never a subclass:
        ``asyncio.timeout`` and task groups of Python 3.11 convert only the class itself).

        Returns:
            The new prediction's id.

        Raises:
            SubmissionUncertainError: the request may have reached the server and no
                usable answer came back (a timeout, a dropped connection, a gateway's
                5xx page, a 200 without an id); it is not re-sent. Raised at once; the
                caller holding an in-flight slot gives it back only once the prediction
                would likely have ended (:meth:`uncertain_until`).
            OutOfCreditsError: final; nothing more can be submitted.
            ConnectError: no connection could be made, after the policy's attempts.
            APIError: the API refused the request (its subclass says why).
        """
        tries = Tries()
        limiter = self.limiter
        while True:
            grant = None if limiter is None else await limiter.acquire(prepared.generations)
            counted, answered, cancelled = False, False, False  # until it may go out
            try:
                # A cancel already due (a deadline run out while the grant came at once,
                # or while the images were prepared) is taken here: nothing goes out.
                await anyio.lowlevel.checkpoint()
                if on_sending is not None:
                    written = on_sending()
                    if written is not None:  # a journal writing off the event loop
                        await written
                counted = True  # unless the server cannot have counted it
                result, cancelled = await self._send_run(prepared)
                outcome = outcome_of("run", result)
                decision = decide("run", outcome, tries, self.retry, self._rng)
                counted, answered = counted_by_server(outcome), outcome.answered
            finally:
                if grant is not None and limiter is not None:
                    limiter.settle(grant, counted=counted, answered=answered)
            if cancelled:
                known = await self._after_cancel(result, on_created, on_not_created, may_cancel)
                if not known and on_uncertain is not None:
                    on_uncertain()
                raise asyncio.CancelledError
            action = decision.action
            if action is Action.RETURN:
                assert isinstance(result, Response)
                prediction_id: str = result.data["id"]
                if on_created is not None:
                    on_created(prediction_id)
                return prediction_id
            if action is Action.UNCERTAIN:
                # An answer, but not the API's: a wrong address answers so every time, as
                # does a proxy refusing its credentials (a 407, or its own 401 page).
                hint = (
                    " (a proxy's: check its credentials)"
                    if outcome.status == 407
                    else " (is base_url the API's address? or a proxy's answer: check its "
                    "address and credentials)"
                    if outcome.answered
                    else ""
                )
                if isinstance(result, Response) and result.is_json and 200 <= result.status < 300:
                    hint = f": {unexpected('run', result.data)}{hint}"  # what is amiss
                if on_uncertain is not None:
                    on_uncertain()
                raise SubmissionUncertainError(
                    f"POST /v1/run: {decision.reason}{hint}; the prediction may exist and "
                    "be charged, so it is not re-sent",
                    status_code=outcome.status,
                ) from (result if isinstance(result, TransportError) else None)
            if on_not_created is not None:
                on_not_created()
            if action is Action.FINAL:
                raise result if isinstance(result, TransportError) else result.error()
            if action is Action.PAUSE and limiter is not None:
                limiter.pause(decision.delay)
            else:
                await anyio.sleep(decision.delay)
            tries = decision.tries

    def uncertain_until(self, prepared: Prepared) -> float:
        """Loop time until which the in-flight slot of a POST that raised
        SubmissionUncertainError stays taken (:meth:`InFlight.release_at`): the
        prediction may exist, and the server counts it in progress until it would likely
        have ended (``uncertain_hold``). The caller is not kept waiting."""
        hold = self._uncertain_hold(prepared) if self._uncertain_hold is not None else 0.0
        return asyncio.get_running_loop().time() + hold

    async def submit_holding(self, prepared: Prepared) -> str:
        """Take an in-flight slot, submit, and hold the slot until the id is seen done
        (:meth:`InFlight.seen_done`), or while an uncertain one may run."""
        lease = await self.in_flight.acquire()
        uncertain: list[float] = []  # (till when the slot stays taken)
        try:
            on_uncertain = lambda: uncertain.append(self.uncertain_until(prepared))  # noqa: E731
            prediction_id = await self.post_run(prepared, on_uncertain=on_uncertain)
        except BaseException:
            if uncertain:
                self.in_flight.release_at(lease, uncertain[0])
            else:
                self.in_flight.release(lease)
            raise
        self.in_flight.hold(prediction_id, lease)
        return prediction_id

    async def _send_run(self, prepared: Prepared) -> tuple[Response | TransportError, bool]:
        """Send POST /v1/run once, so that being cancelled cannot orphan a prediction:
        once sent, the request is let finish (shielded).

        Returns:
            Its answer or failure, and whether the caller was cancelled meanwhile (then
            the caller books the answer, hands it to :meth:`_after_cancel` and raises
            ``asyncio.CancelledError``).
        """
        task = asyncio.ensure_future(
            self.transport.request("POST", "/v1/run", body=prepared.payload, params=prepared.params)
        )
        cancelled = await outlive_cancels(task)
        try:
            return task.result(), cancelled
        except TransportError as exc:
            return exc, cancelled
        except BaseException:  # (the request itself cancelled: a loop shutting down)
            if cancelled:  # no answer: nothing to cancel by id
                return TransportError("POST /v1/run: no answer before the cancel"), True
            raise

    async def _after_cancel(
        self,
        result: Response | TransportError,
        on_created: Callable[[str], None] | None,
        on_not_created: Callable[[], None] | None,
        may_cancel: Callable[[str], bool] | None = None,
    ) -> bool:
        """A POST answered while its caller was being cancelled: if it created a
        prediction, ``on_created`` hears of it and it is cancelled on the server (unless
        ``may_cancel`` says no: then it is left running, its id with ``on_created``); if its
        answer proves nothing was created, ``on_not_created`` hears of it. Otherwise (no
        answer, or one without an id that proves nothing) the prediction may exist and
        be charged with no id to cancel it by: a warning on the ``fashn_async`` logger
        says so, as a :class:`SubmissionUncertainError` would have.

        Returns:
            Whether the outcome is known (created and cancelled, or not created).
        """
        prediction_id = _prediction_id(result) if isinstance(result, Response) else None
        if prediction_id is not None:
            with contextlib.suppress(FashnError):
                if on_created is not None:
                    on_created(prediction_id)
                if may_cancel is None or may_cancel(prediction_id):
                    await self._cancel_quietly(prediction_id)
            return True
        if isinstance(result, Response) and self._proves_none(result):
            if on_not_created is not None:
                on_not_created()
            return True
        why = str(result) if isinstance(result, TransportError) else f"HTTP {result.status}"
        logger.warning(
            "POST /v1/run was cancelled by its caller and came back with no prediction id "
            "(%s): the prediction may exist and be charged, and cannot be cancelled",
            why,
        )
        return False

    def _proves_none(self, response: Response) -> bool:
        """Whether an answer without an id proves no prediction was created (an API
        error answer), as the decision table reads it; a gateway's page proves nothing."""
        decision = decide("run", outcome_of("run", response), Tries(), self.retry, self._rng)
        return decision.action not in (Action.UNCERTAIN, Action.RETURN)


def _prediction_id(response: Response) -> str | None:
    """The id of a successful answer, or None (none, or one unusable in a URL path:
    ``_answers.id_problem``, the rule ``_decisions.body_shape`` reads answers by)."""
    data = response.data
    if 200 <= response.status < 300 and isinstance(data, dict):
        prediction_id = data.get("id")
        if isinstance(prediction_id, str) and id_problem(prediction_id) is None:
            return prediction_id
    return None
