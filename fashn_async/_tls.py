"""Whose TLS certificates the client trusts: the ``verify`` option, as an SSL context.

The API is reached over HTTPS. Behind a proxy that opens TLS to inspect it (most
corporate ones), the certificates a client sees are signed by the company's own
certificate authority, which the system's store may not hold. ``verify`` says what to
trust, as httpx's option of that name does:

- ``True`` (the default): the system's store, as OpenSSL finds it, so the
  ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` environment variables name another one (read
  when a client's first connection is made; one context per process and pair of values);
- a path: a PEM bundle of CA certificates, or a folder of them (OpenSSL's hashed
  layout, ``c_rehash``), trusted *instead of* the system's store;
- an :class:`ssl.SSLContext`: used as given, for anything else (a client certificate,
  pinned ciphers).

``False`` is refused: without verification anyone between the client and the API could
read the API key. A context built without verification is the caller's own choice.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
from pathlib import Path

from fashn_async._validators import shorten
from fashn_async.errors import ConfigurationError

__all__ = ["Verify", "check_verify", "context_for"]

#: What the client holds once ``verify`` is checked: the system's store (``True``,
#: made into a context when first needed) or a context.
Verify = bool | ssl.SSLContext


def check_verify(verify: object) -> Verify:
    """``verify`` as the client keeps it: ``True``, or an SSL context (a path is read now).

    Raises:
        ConfigurationError: ``False``; an empty path; no file or folder at the path; a
            file holding no certificate OpenSSL can read (the reason quoted); a folder
            holding none under the hashed names OpenSSL looks up; anything else.
    """
    if verify is True or isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        raise ConfigurationError(
            "verify=False is refused: anyone between you and the API could read the API "
            "key. Behind a proxy that inspects TLS, pass its CA bundle (verify='ca.pem') "
            "or an ssl.SSLContext"
        )
    if isinstance(verify, str | os.PathLike) and isinstance(os.fspath(verify), str):
        if not os.fspath(verify).strip():  # Path("") is ".", the current folder
            raise ConfigurationError(
                f"verify={os.fspath(verify)!r} names no file: pass True (the system's store), "
                "the path of a CA bundle or folder, or an ssl.SSLContext"
            )
        return _from_path(Path(os.fspath(verify)).expanduser())
    raise ConfigurationError(
        "verify must be True, a path to a CA bundle or folder, or an ssl.SSLContext, "
        f"got {type(verify).__name__} {shorten(verify)}"
    )


def context_for(verify: Verify) -> ssl.SSLContext:
    """The context a connection uses: ``verify``'s own, or the system's store."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    return _system_store(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _system_store(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """The system's store, once per process and pair of environment values (it takes
    about 30 ms to load); OpenSSL reads the two variables itself."""
    del cert_file, cert_dir  # the cache's key: the environment the store was read under
    return ssl.create_default_context()


#: How OpenSSL names the certificates of a CA folder: the subject's hash, then ``.0``
#: (``.1``... for others of the same hash; ``.r0``, a revocation list, is none), as ``openssl
#: rehash`` (``c_rehash``) makes them. It finds a certificate there by that name only.
_HASHED = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def _from_path(path: Path) -> ssl.SSLContext:
    try:
        if path.is_dir():
            if not any(_HASHED.fullmatch(name) for name in os.listdir(path)):
                raise ConfigurationError(
                    f"verify: the folder {str(path)!r} holds no certificate named by its "
                    "subject hash, the only names OpenSSL looks up in a CA folder: run "
                    "'openssl rehash' on it, or pass a CA bundle file"
                )
            return ssl.create_default_context(capath=str(path))
        if path.is_file():
            return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        reason = exc.reason or exc.strerror or type(exc).__name__
        raise ConfigurationError(
            f"verify: {str(path)!r} holds no CA certificate OpenSSL can read ({reason}); "
            "it should be PEM text ('-----BEGIN CERTIFICATE-----')"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"verify: cannot read {str(path)!r} ({exc.strerror or type(exc).__name__})"
        ) from None
    raise ConfigurationError(f"verify: there is no file or folder at {str(path)!r}")
