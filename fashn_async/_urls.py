"""Image URLs: what the API can fetch, checked without any I/O.

An http(s) URL is sent as given and fetched by the API, so it must be one a server can
fetch: scheme, host (IDNA 2008), port, length. A string that is no URL but looks like a
local path gets a message saying to pass ``pathlib.Path``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import unicodedata
from typing import Any, Final
from urllib.parse import urlsplit

import idna

from fashn_async._redact import shown_url
from fashn_async._validators import encodable, shorten
from fashn_async.errors import ImageInputError, InvalidRequestError

__all__ = ["MAX_URL_LENGTH", "check_url"]

#: Longest image URL accepted, in characters: 8 KiB is the request-line limit of common
#: HTTP servers and CDNs (nginx, Apache, CloudFront), so a longer URL cannot be fetched.
MAX_URL_LENGTH: Final = 8192
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_HINT = re.compile(r"^(?:[A-Za-z]:[\\/]|[.~]{0,2}[\\/]|[^:/?#]+[\\/])|\.[A-Za-z0-9]{2,5}$")


def check_url(
    field: str,
    value: Any,
    *,
    error: type[InvalidRequestError] = ImageInputError,
    data_uris: bool = True,
) -> None:
    """An http(s) URL the API can fetch: host valid under IDNA 2008, port 1-65535.

    ``data_uris``: whether the field takes a data URI instead (an image field, which
    reads one before this check), so that messages offer it; a ``webhook_url`` does not.

    Underscores are allowed in host labels (some CDNs use them); white space, control
    characters and URLs over :data:`MAX_URL_LENGTH` characters are not.

    Raises:
        ImageInputError: (or ``error``) naming the field, the URL and what is accepted.
    """

    def fail(problem: str) -> InvalidRequestError:
        # A URL may carry a signed token or a password: shown masked.
        shown = shown_url(value) if isinstance(value, str) else value
        return error(f"{field}: {problem} (got {shorten(shown)})")

    if not isinstance(value, str):
        raise fail("expected an http(s) URL string")
    if not encodable(value):
        raise fail("the URL holds a lone surrogate code point, which UTF-8 cannot carry")
    if len(value) > MAX_URL_LENGTH:
        raise fail(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise fail("the URL contains white space or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise fail("the URL's port must be a number from 1 to 65535") from None
    expected = (
        "an http(s) URL or a data:image/<type>;base64, URI" if data_uris else "an http(s) URL"
    )
    if parts.scheme.lower() == "data":  # DATA: or Data: (the API reads a lower-case data URI only)
        raise fail(
            "a data URI starts with 'data:' in lowercase: data:image/<type>;base64,"
            if data_uris
            else "expected an http(s) URL, not a data URI"
        )
    if value.startswith("//"):
        raise fail(
            "a URL needs its scheme: write https:" + shorten(shown_url(value), 40).strip("'\"")
        )
    if parts.scheme.lower() not in ("http", "https"):
        if len(parts.scheme) <= 1 and _looks_like_path(value):  # none, or a drive letter
            raise fail(_PATH_MESSAGE)
        raise fail(f"expected {expected} (the scheme {parts.scheme or '(none)'!r} is not accepted)")
    if port == 0:
        raise fail("the URL's port must be a number from 1 to 65535")
    authority_problem = _authority_problem(parts.netloc)
    if authority_problem:
        raise fail(authority_problem)
    host = parts.hostname
    if not host:
        raise fail("the URL names no host")
    if not _valid_host(host):
        raise fail("the URL's host is not a valid domain name or IP address (IDNA 2008)")


_DELIMITERS = str.maketrans("", "", "@:#?")


def _authority_problem(netloc: str) -> str | None:
    """What makes the part between ``//`` and the path unusable, if anything.

    A backslash there is read as a path separator by browsers and by HTTP servers
    following the WHATWG URL standard (``http://x.com\\@y.com/`` is host ``x.com`` to
    them, ``y.com`` to ``urlsplit``): the host would be ambiguous. A ``%`` there starts
    a ``%XX`` escape (RFC 3986 section 2.1). After an IPv6 literal's ``]`` only
    ``:port`` may follow, brackets appear nowhere else (a user part included), and a
    port is ASCII digits. A character that NFKC normalization turns into a delimiter or
    a ``%`` is refused, as yarl (the emulator's parser) refuses it.
    """
    if "\\" in netloc:
        return "the URL holds a backslash before its path (use / or percent-encode it)"
    if _BAD_ESCAPE.search(netloc):
        return "a % before the URL's path must start a %XX escape (two hex digits)"
    if not netloc.isascii():
        # As yarl and urllib check: a character that NFKC normalization (IDNA's)
        # turns into a delimiter or a "%" would make another URL of it.
        plain = netloc.translate(_DELIMITERS)
        normal = unicodedata.normalize("NFKC", plain)
        if normal != plain and any(char in normal for char in "/?#@:%"):
            return (
                "the URL's host or user part holds a character that NFKC normalization "
                "turns into / ? # @ : or % (write it plainly or percent-encode it)"
            )
    user, _, host_port = netloc.rpartition("@")
    if "[" in user or "]" in user:  # RFC 3986 section 3.2.1: not in a user part
        return "square brackets in a URL's user part must be percent-encoded (%5B, %5D)"
    if host_port.startswith("["):
        after = host_port.partition("]")[2]
        if after and not after.startswith(":"):
            return "only :port may follow the ']' of an IPv6 address in a URL"
        port = after[1:]
    elif "[" in host_port or "]" in host_port:
        return "square brackets in a URL's host are for an IPv6 address only ([2001:db8::1])"
    else:
        port = host_port.rpartition(":")[2] if ":" in host_port else ""
    if port and not (port.isascii() and port.isdigit()):
        return "the URL's port must be a number from 1 to 65535"
    return None


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    # One trailing dot names the DNS root ("example.com."); two leave an empty label.
    name = host.removesuffix(".")
    if len(name) > 253 or "" in name.split("."):
        return False
    try:
        # Strict IDNA 2008 after lowercasing (no UTS 46 mapping: a soft hyphen or a
        # full-width letter is refused, not silently dropped or folded). Underscores are
        # common in practice though not in IDNA: the rest of the label is checked.
        idna.encode(name.lower().replace("_", "a"))
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True


_PATH_MESSAGE = (
    "this looks like a local file path, but a str is read as a URL or data URI: "
    "pass pathlib.Path(...) to send the file (or write the URL with http:// or https://)"
)


def _looks_like_path(value: str) -> bool:
    # Only reached for a value already refused: the stat just words the error better.
    return bool(_PATH_HINT.search(value)) or os.path.exists(value)
