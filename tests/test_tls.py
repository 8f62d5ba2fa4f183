"""HTTPS as the API serves it, directly and through a proxy's CONNECT tunnel, with a
company's own certificate authority (``AsyncFashn(verify=...)``).

The emulator serves TLS with a certificate from a throwaway CA (trustme, the test CA
library of the python-trio project); tinyproxy is the real forward proxy a tunnel goes
through. Real time (a proxy process), at 1/100 of the API's speed.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
from helpers import system_program
from proxy_support import Tinyproxy

from fashn_async import AsyncFashn, errors
from fashn_async._tls import check_verify
from fashn_async.testing import Emulator, EmulatorConfig

pytestmark = pytest.mark.looptime(False)  # a real proxy process, real time

SCALE = 0.01


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A company's own certificate authority, as a proxy that inspects TLS has."""
    return trustme.CA(organization_name="Example Corp")


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The CA's certificate as a PEM bundle, as IT hands it out."""
    path = tmp_path / "corp-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


class Handshakes:
    """A server context for ``names``, counting the TLS handshakes clients begin."""

    def __init__(self, ca: trustme.CA, *names: str) -> None:
        self.count = 0
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(self.context)
        self.context.sni_callback = self._hello

    def _hello(self, *_: Any) -> None:
        self.count += 1


def _emulator(server: Handshakes) -> Emulator:
    return Emulator(EmulatorConfig(time_scale=SCALE), ssl=server.context)


async def _try_on(client: AsyncFashn, emu: Emulator, folder: Path) -> list[Path]:
    """A whole try-on, its output saved (a download over TLS too)."""
    async with client:
        result = await client.run(
            model_image=emu.sample_image_url("model"),
            garment_image=emu.sample_image_url("garment"),
            category="tops",
        )
        return await result.save(folder)


@pytest.mark.parametrize("form", ["path", "str", "folder", "context"])
async def test_https_with_the_company_ca(
    ca: trustme.CA, ca_file: Path, tmp_path: Path, clean_env: pytest.MonkeyPatch, form: str
) -> None:
    """verify= a CA bundle (a Path or a str), a folder of CA certificates, or a context:
    a try-on over HTTPS, its output downloaded over HTTPS too."""
    if form == "folder":
        folder = tmp_path / "certs"
        folder.mkdir()
        # OpenSSL's hashed layout: <subject hash>.0, as c_rehash writes it.
        ca.cert_pem.write_to_path(str(folder / f"{_subject_hash(ca_file)}.0"))
        verify: Any = folder
    elif form == "context":
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
    else:
        verify = ca_file if form == "path" else str(ca_file)
    server = Handshakes(ca, "127.0.0.1")
    async with _emulator(server) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        saved = await _try_on(emu.client(verify=verify), emu, tmp_path / "out")
        assert emu.report().requests_by_route["run"] == 1
    assert len(saved) == 1
    assert saved[0].read_bytes().startswith(b"\x89PNG")
    assert server.count >= 1


def _subject_hash(pem: Path) -> str:
    """``openssl x509 -hash`` of a certificate: the file name a CA folder looks up."""
    out = subprocess.run(  # noqa: S603 - the system's openssl, fixed arguments
        [system_program("openssl", "openssl"), "x509", "-hash", "-noout", "-in", str(pem)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


async def test_ssl_cert_file_names_the_store(
    ca_file: Path, ca: trustme.CA, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    """verify=True (the default) reads SSL_CERT_FILE, as the command line relies on."""
    clean_env.setenv("SSL_CERT_FILE", str(ca_file))
    async with _emulator(Handshakes(ca, "127.0.0.1")) as emu:
        saved = await _try_on(emu.client(), emu, tmp_path)
    assert len(saved) == 1


@pytest.mark.parametrize("how", ["HTTPS_PROXY", "proxy="])
async def test_https_through_a_proxy_tunnel(
    ca: trustme.CA,
    ca_file: Path,
    tinyproxy: Tinyproxy,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    how: str,
) -> None:
    """HTTPS through tinyproxy, set by HTTPS_PROXY or proxy=: every connection is a
    CONNECT tunnel (the proxy's log names it), and the proxy never sees a request's
    path, which went encrypted; the try-on is done and its output saved."""
    options: dict[str, Any] = {"verify": ca_file}
    if how == "proxy=":
        options["proxy"] = tinyproxy.url
    else:
        clean_env.setenv("HTTPS_PROXY", tinyproxy.url)
        options["trust_env"] = True  # (emu.client() leaves the environment out by default)
    async with _emulator(Handshakes(ca, "127.0.0.1")) as emu:
        port = emu.url.rsplit(":", 1)[1]
        saved = await _try_on(emu.client(**options), emu, tmp_path / "out")
        report = emu.report()
    assert len(saved) == 1
    assert report.requests_by_route["run"] == 1
    assert tinyproxy.forwarded(f"CONNECT 127.0.0.1:{port}") >= 1
    assert tinyproxy.forwarded("/v1/") == 0


@pytest.mark.parametrize(
    ("names", "verify", "why"),
    [
        (("127.0.0.1",), None, "unable to get local issuer certificate"),  # the system's
        (("api.example.test",), "ca", "IP address mismatch"),  # another host's certificate
    ],
)
async def test_a_certificate_not_trusted_is_final_and_sends_nothing(
    ca: trustme.CA,
    ca_file: Path,
    clean_env: pytest.MonkeyPatch,
    names: tuple[str, ...],
    verify: str | None,
    why: str,
) -> None:
    """A certificate the client does not trust (signed by a CA it does not hold, or for
    another host): CertificateError at once, naming OpenSSL's reason and the remedy; one
    handshake, no retry, nothing sent (not uncertain: POST can be sent again later)."""
    server = Handshakes(ca, *names)
    options = {"verify": ca_file} if verify else {}
    async with _emulator(server) as emu:
        async with emu.client(**options) as client:
            with pytest.raises(errors.CertificateError) as info:
                await client.submit(
                    model_image=emu.sample_image_url("model"),
                    garment_image=emu.sample_image_url("garment"),
                    category="tops",
                )
        assert emu.report().requests_by_route.get("run", 0) == 0
    assert server.count == 1
    message = str(info.value)
    assert why in message
    assert "verify=" in message
    assert "SSL_CERT_FILE" in message
    assert isinstance(info.value, errors.ConnectError)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize(
    ("verify", "match"),
    [
        (False, "verify=False is refused"),
        (None, "verify must be True, a path"),
        (0, "verify must be True, a path"),
        (b"ca.pem", "verify must be True, a path"),
        ("no-such-ca.pem", "no file or folder at 'no-such-ca.pem'"),
        ("", "verify='' names no file"),  # Path("") is the current folder: trusted nothing
        (" ", "verify=' ' names no file"),
    ],
)
def test_a_bad_verify_is_refused_at_construction(verify: object, match: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=match):
        AsyncFashn(api_key="test-key-0123", verify=verify)  # type: ignore[arg-type]


@pytest.mark.parametrize("content", [b"", b"not a certificate\n", b"\x00\xff" * 40])
def test_a_file_with_no_certificate_is_refused(tmp_path: Path, content: bytes) -> None:
    """An empty file, text that is not PEM, binary junk: refused naming the file."""
    path = tmp_path / "ca.pem"
    path.write_bytes(content)
    with pytest.raises(errors.ConfigurationError, match="holds no CA certificate"):
        check_verify(path)


@pytest.mark.parametrize(
    "names",
    [[], ["ca.pem", "notes.txt"], ["0a1b2c3d.pem"], ["0a1b2c3d.r0"]],  # .r0: a CRL
)
def test_a_folder_with_no_hashed_certificate_is_refused(tmp_path: Path, names: list[str]) -> None:
    """A folder (".", an empty one, one of PEM files not rehashed) in which OpenSSL would
    find nothing: refused at construction, not a client that trusts nobody."""
    for name in names:
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(errors.ConfigurationError, match="openssl rehash"):
        check_verify(tmp_path)
