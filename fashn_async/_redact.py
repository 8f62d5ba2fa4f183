"""URLs as they may be shown: the one place a URL is made safe for a repr, a message or a log.

Every URL the package shows (``base_url``, ``proxy``, the Redis URL, the emulator address
the command line prints) goes through :func:`shown_url`. It reads the text itself, never
through a URL parser that could refuse it, so an unreadable URL is masked as well as a
good one: a bad URL's error message is where a pasted secret is most likely to be shown.
"""

from __future__ import annotations

import base64
import functools
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

__all__ = [
    "LONGEST_SHOWN",
    "SAFE_QUERY_NAMES",
    "Secret",
    "map_strings",
    "basic_credential",
    "safe_repr",
    "shown_url",
]

#: Query parameters shown with their value: known Redis options that are not secrets.
#: Every other parameter's value (``password``, ``token``, ``api_key``...) is masked.
SAFE_QUERY_NAMES = frozenset(
    {
        "db",
        "protocol",
        "socket_timeout",
        "socket_connect_timeout",
        "health_check_interval",
        "ssl_cert_reqs",
    }
)

_MASK = "***"


#: Longest text that is read and shown, masked; a longer one is shown by its scheme
#: and length only (a URL the API takes is at most 8192 characters: ``_urls``).
LONGEST_SHOWN: Final = 16384
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}:")


def shown_url(url: object) -> str:
    """``url`` with every credential it may hold replaced by ``***``.

    Masked: the password of the authority (``user:***@host``; a user name without a
    password is taken for a token: ``***@host``), the value of every query parameter
    outside :data:`SAFE_QUERY_NAMES` (``?password=***&db=0``), a query item without a
    value, and the fragment. The user part is taken up to the last ``@`` of the text, so
    a password holding an unescaped ``/``, ``?``, ``#`` or ``@`` is masked too (a URL
    parser would read a query or a fragment there: the user meant a password), and the
    user name is shown only if none of ``/?#@`` is in it. Control characters (which URL
    parsers drop) are removed first. Never raises.

    Args:
        url: A URL, or any object (its ``str()``, so a ``yarl.URL`` is masked too).

    Returns:
        The text to show.
    """
    try:
        text = url if isinstance(url, str) else str(url)
    except Exception:  # a broken __str__ must not hide the real problem
        return f"<{type(url).__name__}>"
    if len(text) > LONGEST_SHOWN:
        # Not read at all (it may be megabytes, and a cut could end inside a password):
        # its scheme, if it has one, and its length.
        found = _SCHEME.match(text, 0, 32)
        return f"{found.group(0) if found else ''}<{len(text)} characters>"
    text = "".join(char for char in text if char.isprintable())
    # The authority begins after "scheme://" (or a leading "//") only: a "//" further on
    # (in a password or a query value) is not a scheme's.
    found = _SCHEME.match(text)
    start = found.end() if found else 0
    slashes = text.startswith("//", start)
    shown, rest = text[: start + 2 * slashes], text[start + 2 * slashes :]
    userinfo, at, rest = rest.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        named = colon and not any(char in user for char in "/?#@")
        shown += f"{user}:{_MASK}@" if named else f"{_MASK}@"
    head, hash_sep, fragment = rest.partition("#")
    head, query_sep, query = head.partition("?")
    shown += head
    if query_sep:
        shown += "?" + "&".join(_shown_item(item) for item in query.replace(";", "&").split("&"))
    if hash_sep:
        shown += f"#{_MASK}" if fragment else "#"
    return shown


def _shown_item(item: str) -> str:
    name, equals, _value = item.partition("=")
    if not equals:
        return _MASK if item else item
    return f"{name}={_value}" if name.lower() in SAFE_QUERY_NAMES else f"{name}={_MASK}"


_T = TypeVar("_T")

#: The shortest piece of a secret hidden on its own: 8 characters of a random key tell
#: little (48 bits of its base64 alphabet), and fewer would hide unrelated text.
FRAGMENT = 8


def _ascii_lower(text: str) -> str:
    """``text`` with ASCII letters in lower case, every other character (and the length)
    as it is: positions in it are positions in ``text``."""
    return text.translate(_LOWER)


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Secret:
    """Holds the API key from the moment it is checked; its repr never shows it, so a
    traceback's frame locals (what error reporters capture) hold only this.

    ``also``: other secrets an answer may repeat and the scrubbing hides the same way (a
    proxy's password, which a proxy may echo in its ``Proxy-Authorization``); shorter
    than 3 characters they are not searched for (they would mask every such letter).
    """

    __slots__ = ("_cores", "_folded", "_grams", "_pattern", "_value")

    def __init__(self, value: str, also: Iterable[str] = ()) -> None:
        self._value = value
        hidden = sorted({value, *(v for v in also if len(v) >= 3)}, key=len, reverse=True)
        # What scrub_text looks for, found once: each in any case, and in base64.
        self._pattern = re.compile("|".join(map(re.escape, hidden)), flags=re.IGNORECASE)
        self._folded = [v.casefold() for v in hidden]
        self._cores = [core for v in hidden for core in _base64_cores(v)]
        # Each FRAGMENT-character piece of each, in ASCII lower case: where a piece of one
        # begins (a server's "sk-abc...wxyz", a line cut at 100 bytes, a key over two lines).
        self._grams = {
            _ascii_lower(v[i : i + FRAGMENT]): _ascii_lower(v)
            for v in hidden
            for i in range(len(v) - FRAGMENT + 1)
        }

    def also(self, values: Iterable[str]) -> Secret:
        """The same key, hiding ``values`` too."""
        return Secret(self._value, [*values])

    def __repr__(self) -> str:
        return "'***'"

    def reveal(self) -> str:
        """The key itself, for the one header that carries it (and its hash)."""
        return self._value

    def scrub_text(self, text: str) -> str:
        """``text`` with the key shown as ``***``: as it is, in any case, percent-encoded
        (a URL's query, a Location header; up to four times over), in base64 (say
        ``Basic`` or ``Bearer`` base64-encoded), or any piece of it of FRAGMENT (8)
        characters or more (a server's masked echo, a line cut short). A server or proxy
        that repeats the request's ``Authorization`` in its answer must not put the key
        in an error, a status or a log."""
        decoded = text
        for _ in range(4):  # percent-encoded, maybe more than once (proxies re-encode)
            unquoted = urllib.parse.unquote(decoded) if "%" in decoded else decoded
            if unquoted == decoded:
                break
            decoded = unquoted
        if decoded != text and any(v in decoded.casefold() for v in self._folded):
            text = decoded
        text = self._pattern.sub(_MASK, text)
        for core in self._cores:
            text = text.replace(core, _MASK)
        return self._scrub_fragments(text)

    def _scrub_fragments(self, text: str) -> str:
        """``text`` with every run of FRAGMENT characters or more that is a piece of a
        secret (in any ASCII case) shown as ``***``, each run as long as it goes on."""
        if not self._grams or len(text) < FRAGMENT:
            return text
        lower = _ascii_lower(text)
        kept, i, start = [], 0, 0
        while i <= len(lower) - FRAGMENT:
            whole = self._grams.get(lower[i : i + FRAGMENT])
            if whole is None:
                i += 1
                continue
            end = i + FRAGMENT
            while end < len(lower) and lower[i : end + 1] in whole:
                end += 1
            kept += [text[start:i], _MASK]
            i = start = end
        return "".join([*kept, text[start:]])

    def scrub_json(self, value: Any) -> Any:
        """A parsed JSON ``value`` with :meth:`scrub_text` applied to every string in it,
        keys included (any escape or encoding JSON allows has been decoded by then);
        lists and objects are changed in place (iteratively: any depth)."""
        return map_strings(value, self.scrub_text)


def basic_credential(user: str, password: str) -> str:
    """What a ``Proxy-Authorization: Basic`` header carries: base64 of ``user:password``."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _base64_cores(key: str) -> list[str]:
    """The part of the key's base64 that does not depend on what precedes or follows it,
    at each of the three alignments (what base64 of ``Bearer <key>`` holds)."""
    raw = key.encode("utf-8")
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        start = -(-offset * 4 // 3)  # characters touched by the padding before it
        stop = (offset + len(raw)) * 4 // 3  # ... and by what comes after
        core = encoded[start + 1 : stop - 1]
        if len(core) >= 8:
            cores.append(core)
    return cores


def safe_repr(method: Callable[[_T], str]) -> Callable[[_T], str]:
    """A ``__repr__`` that works on an object whose ``__init__`` raised part way.

    Such an object is in the raising frame's locals, which error reporters (Sentry,
    ``traceback.TracebackException(capture_locals=True)``, ``pytest --showlocals``)
    show with ``repr``; one that raised AttributeError there broke the report itself.
    """

    @functools.wraps(method)
    def __repr__(self: Any) -> str:
        try:
            return method(self)
        except AttributeError:
            return f"<{type(self).__name__} (not fully built)>"

    return __repr__


def map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """A parsed JSON ``value`` with ``change`` applied to every string in it, the names
    of objects included; lists and objects are changed in place (iteratively: any
    depth)."""
    if isinstance(value, str):
        return change(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for name in list(node):  # (JSON's names are strings)
                item = node.pop(name)
                node[change(name)] = change(item) if isinstance(item, str) else item
                if isinstance(item, dict | list):
                    stack.append(item)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = change(item)
                elif isinstance(item, dict | list):
                    stack.append(item)
    return value
