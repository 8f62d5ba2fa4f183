"""Redis URLs as they may be shown: with any password masked."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

__all__ = ["masked_url"]


def masked_url(url: str) -> str:
    """``url`` with any password (in the authority or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable URL>"
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{host}"
    query = "&".join(
        f"{name}=***" if name.lower() == "password" else f"{name}={value}" if sep else name
        for name, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment).geturl()
