"""A request's exact JSON body, built without ever holding up the event loop.

Images are checked and encoded by ``_images`` (in worker threads for large ones). The
body is then JSON-encoded with a short placeholder where each data URI goes, and the
data URIs are spliced in as bytes: base64 and the ``data:image/<type>;base64,`` prefix
need no JSON escaping, so a 20 MB image is never passed through ``json.dumps`` (which
holds the GIL, and so the loop, for its whole length) and is copied once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp.payload

from fashn_async._images import encode_image, is_data_uri
from fashn_async._models import Request
from fashn_async._sources import OFFLOAD_BYTES, check_body_size, in_worker, join
from fashn_async.errors import InvalidRequestError

if TYPE_CHECKING:
    from fashn_async._prepare import Preparer

__all__ = ["JsonBody", "Prepared", "prepare_request"]

#: Slice of the body handed to the socket per write: each write copies at most this much
#: on the loop (aiohttp joins a write with the headers), then waits for the socket to
#: drain, so a 20 MB body never holds the loop for longer than one slice.
WRITE_SLICE = 256 * 1024


class Prepared:
    """A request with its images encoded: the exact JSON body (bytes) and its weight."""

    __slots__ = ("generations", "params", "payload", "request")

    def __init__(
        self, request: Request, payload: bytes | bytearray, params: Mapping[str, str] | None
    ) -> None:
        self.request = request
        #: The UTF-8 JSON body, sent as is (a bytearray when joined off the loop).
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
    spliced: dict[str, bytes | bytearray] = {}
    values: dict[str, str] = {}
    for index, (field, value) in enumerate(request.image_fields().items()):
        encoded = await encode_image(field, value, preparer=preparer)
        if is_data_uri(encoded):
            placeholder = f"@{token}-{index}@"
            spliced[placeholder] = encoded
            values[field] = placeholder
        else:  # a URL: small, and may need escaping
            values[field] = encoded.decode("utf-8")
    body = request.body(values)  # checks the inputs again, as sent
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"the request cannot be encoded as JSON: {exc}") from None
    size = sum(len(data) for data in spliced.values())
    check_body_size(len(text) + size)
    if size >= OFFLOAD_BYTES:
        payload: bytearray = await in_worker(_splice, text, spliced)
    else:
        payload = _splice(text, spliced)
    params = {"webhook_url": webhook_url} if webhook_url else None
    return Prepared(request, payload, params)


def _splice(text: str, spliced: Mapping[str, bytes | bytearray]) -> bytearray:
    """``text`` encoded, each ``"placeholder"`` replaced by its data URI."""
    parts: list[bytes | bytearray] = [text.encode("utf-8")]
    for placeholder, data in spliced.items():
        head, sep, tail = parts.pop().partition(f'"{placeholder}"'.encode())
        if not sep:  # a request body that dropped the field: nothing to splice
            parts.append(head)
            continue
        parts += [head, b'"', data, b'"', tail]
    return join(parts)


class JsonBody(aiohttp.payload.Payload):
    """An encoded JSON body, written to the connection in slices of :data:`WRITE_SLICE`.

    ``data=<bytes>`` would be written in one piece: aiohttp joins it with the headers (a
    copy of the whole body on the loop) and warns about bodies over 1 MiB.
    """

    _autoclose = True  # nothing to close: bytes in memory

    def __init__(self, value: bytes | bytearray) -> None:
        super().__init__(value, content_type="application/json")
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The body as text."""
        text: str = self._value.decode(encoding, errors)
        return text

    async def write(self, writer: Any) -> None:
        """Write the whole body, slice by slice."""
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        """Write at most ``content_length`` bytes of the body, slice by slice."""
        view = memoryview(self._value)[:content_length]
        for start in range(0, len(view), WRITE_SLICE):
            await writer.write(view[start : start + WRITE_SLICE])
            # A fast socket (loopback, say) takes every slice without a pause for the
            # buffer to drain: let the loop run between two of them all the same.
            await asyncio.sleep(0)
