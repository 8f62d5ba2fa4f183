"""A request's exact JSON body, built without ever holding up the event loop.

Images are checked and encoded by ``_images`` (in worker threads for large ones). The
body is then JSON-encoded with a short placeholder where each data URI goes, and the
data URIs are spliced in as bytes: base64 and the ``data:image/<type>;base64,`` prefix
need no JSON escaping, so a 20 MB image is never passed through ``json.dumps`` (which
holds the GIL, and so the loop, for its whole length) and is copied once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from fashn_async._images import OFFLOAD_BYTES, encode_image
from fashn_async._models import Request
from fashn_async.errors import InvalidRequestError

if TYPE_CHECKING:
    from fashn_async._prepare import Preparer

__all__ = ["Prepared", "prepare_request"]


class Prepared:
    """A request with its images encoded: the exact JSON body (bytes) and its weight."""

    __slots__ = ("generations", "params", "payload", "request")

    def __init__(self, request: Request, payload: bytes, params: Mapping[str, str] | None) -> None:
        self.request = request
        #: The UTF-8 JSON body, sent as is.
        self.payload = payload
        self.generations = request.generations
        self.params = params

    @property
    def body(self) -> dict[str, Any]:
        """The body parsed back (for tests and journals; the payload is what is sent)."""
        body: dict[str, Any] = json.loads(self.payload)
        return body


async def prepare_request(
    request: Request, *, webhook_url: str | None = None, preparer: Preparer | None = None
) -> Prepared:
    """Encode every image of ``request`` and its JSON body; fails locally, sends nothing.

    Raises:
        ImageInputError: an image is unusable.
        InvalidRequestError: the body cannot be encoded as JSON.
    """
    token = secrets.token_hex(8)
    spliced: dict[str, bytes] = {}
    values: dict[str, str] = {}
    for index, (field, value) in enumerate(request.image_fields().items()):
        encoded = await encode_image(field, value, preparer=preparer)
        if encoded.startswith(b"data:"):
            placeholder = f"@{token}-{index}@"
            spliced[placeholder] = encoded
            values[field] = placeholder
        else:  # a URL: small, and may need escaping
            values[field] = encoded.decode("utf-8")
    try:
        text = json.dumps(request.body(values), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"the request cannot be encoded as JSON: {exc}") from None
    size = sum(len(data) for data in spliced.values())
    if size >= OFFLOAD_BYTES:
        payload: bytes = await anyio.to_thread.run_sync(_splice, text, spliced)
    else:
        payload = _splice(text, spliced)
    params = {"webhook_url": webhook_url} if webhook_url else None
    return Prepared(request, payload, params)


def _splice(text: str, spliced: Mapping[str, bytes]) -> bytes:
    """``text`` encoded, each ``"placeholder"`` replaced by its data URI."""
    parts = [text.encode("utf-8")]
    for placeholder, data in spliced.items():
        head, sep, tail = parts.pop().partition(f'"{placeholder}"'.encode())
        if not sep:  # a request body that dropped the field: nothing to splice
            parts.append(head)
            continue
        parts += [head, b'"', data, b'"', tail]
    return b"".join(parts)
