"""The aiohttp application: routes, auth, HTTP faults, and the API's error bodies.

Error bodies come in two shapes, as in the wild. Errors without a prediction use the
current shape ``{"error": "<Code>", "message": "..."}``; a bad *flat v1* body is answered
in the v1 shape ``{"id": null, "error": {"name": "InputValidationError", ...}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import yarl
from aiohttp import web

from fashn_async._names import TERMINAL_STATUSES

from ._bodies import BodyTooSlow
from ._faults import NETWORK_KINDS, disturb, fault_from_json
from ._images import is_loopback_host, sample_image
from ._limits import RollingWindow, format_retry_after
from ._state import EmulatorState, Rejected
from ._validate import MAX_DEPTH, InvalidRequest, parse_submission, too_deep, url_host

__all__ = ["STATE_KEY", "build_app"]

STATE_KEY = web.AppKey("fashn_emulator_state", EmulatorState)
_SAMPLES_KEY = web.AppKey("fashn_emulator_samples", dict)
_API_ROUTES = frozenset({"run", "status", "cancel", "credits"})
_AUTH_PREFIXES = ("/v1/", "/_emulator/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Return an error in the current shape: ``{"error": code, "message": message}``."""
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _v1_error(message: str) -> web.Response:
    return web.json_response(
        {"id": None, "error": {"name": "InputValidationError", "message": message}}, status=400
    )


def _state(request: web.Request) -> EmulatorState:
    return request.app[STATE_KEY]


def _rejected(state: EmulatorState, route: str, exc: Rejected) -> web.Response:
    state.ledger.reject(route, exc.code)
    headers = None
    if state.config.retry_after and exc.retry_after is not None:
        headers = {"Retry-After": format_retry_after(exc.retry_after)}
    return error_response(429, exc.code, exc.message, headers)


def _drop(request: web.Request) -> None:
    """Close the connection: the client gets no answer at all."""
    transport = request.transport
    if transport is not None:
        transport.close()


# -- middlewares ---------------------------------------------------------------------


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer routing errors (404, 405, ...) with JSON bodies, like the API."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return error_response(404, "NotFound", f"No such route: {request.path}")
        if exc.status == 405:
            return error_response(
                405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}"
            )
        code = "BadRequest" if exc.status < 500 else "InternalServerError"
        return error_response(exc.status, code, exc.reason)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <key>`` on the API and control routes."""
    if request.path.startswith(_AUTH_PREFIXES):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expected = _state(request).config.api_key.encode("utf-8")
        given = token.strip().encode("utf-8", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
            return error_response(
                401,
                "UnauthorizedAccess",
                "Missing or invalid API key: send Authorization: Bearer <key>.",
            )
    return await handler(request)


@web.middleware
async def _http_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the HTTP fault rules to the API routes."""
    route = request.match_info.route.name
    if route not in _API_ROUTES:
        return await handler(request)
    state = _state(request)
    state.ledger.arrive(route, state.clock.now())
    plan = state.faults.for_request(route, state.scale)
    if plan.delay > 0:
        state.ledger.faults[f"{route}:slow"] += 1  # (once, however many slow rules fired)
        # A slow server has the request in hand and is slow to act on it: read the body
        # first, so a client that gives up meanwhile still leaves its submission behind.
        length = request.content_length
        if length is not None and length <= state.config.max_body_bytes:
            with contextlib.suppress(ConnectionError):
                await request.read()
        await asyncio.sleep(plan.delay)
    fault = plan.action
    if fault is None:
        return await handler(request)
    state.ledger.faults[f"{route}:{fault.kind}"] += 1
    if fault.kind in NETWORK_KINDS:
        return await disturb(request, fault, handler)
    if fault.kind == "error_5xx":
        state.ledger.errors_5xx += 1
        return error_response(
            fault.status,
            "InternalServerError",
            "The emulator injected a server error; nothing was created.",
        )
    if fault.kind == "untracked":
        return error_response(404, "NotFound", "the prediction status is no longer tracked")
    if fault.kind == "drop_before":
        state.ledger.dropped += 1
        _drop(request)
        return web.Response()
    response = await handler(request)  # drop_after: it takes effect, the answer is lost
    state.ledger.dropped += 1
    _drop(request)
    return response


# -- API routes ----------------------------------------------------------------------


async def _read_body(request: web.Request) -> bytes | web.Response:
    """Return the body, or the 413 answer when it is over the cap."""
    limit = _state(request).config.max_body_bytes
    too_large = error_response(
        413, "PayloadTooLarge", f"The request body is larger than {limit} bytes."
    )
    if request.content_length is not None and request.content_length > limit:
        return too_large
    try:
        # aiohttp keeps it: a second read() is free
        return await _state(request).bodies.read(request)
    except web.HTTPRequestEntityTooLarge:
        return too_large
    except BodyTooSlow as exc:
        # Answered, then closed: aiohttp would otherwise linger reading the rest.
        answer = error_response(400, "BadRequest", exc.message)
        answer.force_close()
        await answer.prepare(request)
        await answer.write_eof()
        _drop(request)
        return answer
    except ConnectionError:  # the client left mid-body; this answer reaches nobody
        return error_response(400, "BadRequest", "The request body was cut off.")


def _webhook(value: str, *, legacy: bool) -> str:
    try:
        url = yarl.URL(value)
    except (ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not is_loopback_host(url_host(url)):
        raise InvalidRequest(
            "webhook_url: must be an http(s) URL on a loopback host "
            "(localhost, 127.0.0.0/8, ::1): the emulator posts nowhere else",
            legacy=legacy,
        )
    return value


async def _run(request: web.Request) -> web.Response:
    state = _state(request)
    raw = await _read_body(request)
    if isinstance(raw, web.Response):
        state.ledger.bad_requests += 1
        return raw
    try:
        submission, body = parse_submission(raw)
        webhook = request.query.get("webhook_url")
        webhook_url = None if webhook is None else _webhook(webhook, legacy=submission.legacy)
        prediction = state.submit(submission, body, webhook_url)
    except InvalidRequest as exc:
        state.ledger.bad_requests += 1
        return (
            _v1_error(exc.message) if exc.legacy else error_response(400, "BadRequest", exc.message)
        )
    except Rejected as exc:
        return _rejected(state, "run", exc)
    return web.json_response({"id": prediction.id, "error": None})


def _window_check(
    state: EmulatorState, window: RollingWindow, route: str, what: str
) -> web.Response | None:
    now = state.clock.now()
    wait = window.wait(now)
    if wait > 0:
        period = window.period / state.scale
        return _rejected(
            state,
            route,
            Rejected(
                "RateLimitExceeded",
                f"Rate limit exceeded: {window.limit} {what} per {period:g} s.",
                wait,
            ),
        )
    window.add(now)
    return None


def _not_found(pid: str) -> web.Response:
    return error_response(404, "NotFound", f"Prediction {pid!r} not found.")


def _no_longer_tracked(pid: str) -> web.Response:
    return error_response(
        404, "NotFound", f"Prediction {pid!r}: the prediction status is no longer tracked."
    )


async def _status(request: web.Request) -> web.Response:
    state = _state(request)
    refused = _window_check(state, state.status_window, "status", "status calls")
    if refused is not None:
        return refused
    state.ledger.status_calls_total += 1
    pid = request.match_info["id"]
    prediction = state.predictions.get(pid)
    if prediction is None:
        return _not_found(pid)
    arrived = state.clock.now()
    state.ledger.status_call_times[pid].append(arrived)
    if state.expired(prediction, arrived):
        return _no_longer_tracked(pid)
    status, now = await state.current(prediction)
    headers: dict[str, str] = {}
    if status in TERMINAL_STATUSES:
        state.ledger.first_seen_terminal.setdefault(pid, now)
    if status == "completed":
        headers["x-fashn-credits-used"] = str(prediction.submission.num_samples)
    return web.json_response(prediction.body(status, state.base_url), headers=headers)


async def _cancel(request: web.Request) -> web.Response:
    """Cancel a running prediction.

    A prediction that has already ended (completed, failed or canceled) is left unchanged
    and answered with its status, exactly as GET /v1/status would answer it.
    """
    state = _state(request)
    pid = request.match_info["id"]
    prediction = state.predictions.get(pid)
    if prediction is None:
        return _not_found(pid)
    if state.expired(prediction, state.clock.now()):
        return _no_longer_tracked(pid)
    status, _now = await state.cancel(prediction)
    return web.json_response(prediction.body(status, state.base_url))


async def _credits(request: web.Request) -> web.Response:
    state = _state(request)
    refused = _window_check(state, state.credits_window, "credits", "credit checks")
    if refused is not None:
        return refused
    left = state.balance()
    return web.json_response({"credits": {"total": left, "subscription": left, "on_demand": 0}})


# -- files: the CDN and the sample images --------------------------------------------


async def _cdn(request: web.Request) -> web.Response:
    found = _state(request).output(request.match_info["id"], request.match_info["name"])
    if found is None:
        return error_response(404, "NotFound", "No such file on the CDN.")
    data, content_type = found
    return web.Response(body=data, content_type=content_type)


async def _sample(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind not in ("model", "garment"):
        return error_response(404, "NotFound", f"No sample image {kind!r}.")
    cache: dict[str, asyncio.Future[bytes]] = request.app[_SAMPLES_KEY]
    if kind not in cache:
        cache[kind] = asyncio.get_running_loop().run_in_executor(None, sample_image, kind)
    return web.Response(body=await asyncio.shield(cache[kind]), content_type="image/png")


# -- control routes ------------------------------------------------------------------


async def _report(request: web.Request) -> web.Response:
    return web.json_response(_state(request).report().to_json())


async def _config(request: web.Request) -> web.Response:
    """What a client needs to match this emulator's clock (the CLI reads it)."""
    config = _state(request).config
    return web.json_response(
        {
            "emulator": "fashn-async",
            "time_scale": config.time_scale,
            "status_retention": config.status_retention,
        }
    )


async def _inject(request: web.Request) -> web.Response:
    state = _state(request)
    raw = await _read_body(request)
    if isinstance(raw, web.Response):
        return raw
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return error_response(400, "BadRequest", f"Bad fault: malformed JSON ({exc})")
    if too_deep(data):
        return error_response(400, "BadRequest", f"Bad fault: nested more than {MAX_DEPTH} deep")
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(item, dict) for item in items):
        return error_response(400, "BadRequest", "Bad fault: send an object or a list of them")
    try:
        faults = [fault_from_json(item) for item in items]
    except ValueError as exc:
        return error_response(400, "BadRequest", f"Bad fault: {exc}")
    for fault in faults:
        state.faults.add(fault)
    return web.json_response({"added": len(faults)})


async def _reset(request: web.Request) -> web.Response:
    _state(request).faults.clear()
    return web.json_response({"faults": 0})


def build_app(state: EmulatorState) -> web.Application:
    """Return the emulator's application, serving ``state``."""
    app = web.Application(
        middlewares=[_json_errors, _auth, _http_faults], client_max_size=state.config.max_body_bytes
    )
    app[STATE_KEY] = state
    app[_SAMPLES_KEY] = {}
    app.router.add_post("/v1/run", _run, name="run")
    app.router.add_get("/v1/status/{id}", _status, name="status", allow_head=False)
    app.router.add_get("/v1/cancel/{id}", _cancel, name="cancel", allow_head=False)
    app.router.add_get("/v1/credits", _credits, name="credits", allow_head=False)
    app.router.add_get("/cdn/{id}/{name}", _cdn)  # like a CDN, HEAD works too
    app.router.add_get("/samples/{kind}.png", _sample)
    app.router.add_get("/_emulator/report", _report, allow_head=False)
    app.router.add_get("/_emulator/config", _config, allow_head=False)
    app.router.add_post("/_emulator/faults", _inject)
    app.router.add_post("/_emulator/reset", _reset)
    return app
