"""Saving outputs where the disk says no: a SaveError naming the path, nothing half-written."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path

import anyio
import attrs
import pytest
from helpers import ClosingServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fashn_async import AsyncFashn, ModelRequest, TryOnResult, _outputs, errors
from fashn_async._results import stem_problem
from fashn_async.testing import Emulator, sample_image


async def finished(client: AsyncFashn, emulator: Emulator, *, base64: bool) -> TryOnResult:
    """A completed try-on whose outputs are URLs, or data URIs with ``base64``."""
    return await client.run(
        ModelRequest(
            model_name="tryon-v1.6",
            inputs={
                "model_image": emulator.sample_image_url("model"),
                "garment_image": sample_image("garment"),
                "return_base64": base64,
            },
        )
    )


@pytest.mark.parametrize("base64", [False, True], ids=["url", "data-uri"])
async def test_folder_that_is_a_file(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path, base64: bool
) -> None:
    """save() into a path that is a file (or under one) raises SaveError naming it."""
    result = await finished(client, emulator, base64=base64)
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    for target in (blocker, blocker / "sub"):
        with pytest.raises(errors.SaveError, match="a file is in the way") as info:
            await result.save(target)
        assert info.value.path == str(target)
        assert isinstance(info.value, errors.DownloadError)  # what a bulk job catches
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("base64", [False, True], ids=["url", "data-uri"])
async def test_output_name_taken_by_a_folder(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path, base64: bool
) -> None:
    """A folder where the output file goes raises SaveError; no partial file is left."""
    result = await finished(client, emulator, base64=base64)
    (tmp_path / f"{result.id}_0.png").mkdir()
    with pytest.raises(errors.SaveError, match="a folder of that name is in the way") as info:
        await result.save(tmp_path)
    assert info.value.path == str(tmp_path / f"{result.id}_0.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{result.id}_0.png"]


async def test_a_canceled_save_waits_for_its_write_and_leaves_no_partial_file(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """save() canceled while a worker thread writes its temporary file: the cancel comes
    through only once that write is done (a thread cannot be stopped; left behind, it
    would take disk space and make the removed file again), and no file is left."""
    result = await finished(client, emulator, base64=False)
    loop = asyncio.get_running_loop()
    entered, go, ended = threading.Event(), threading.Event(), threading.Event()
    writing: list[bool] = []
    append = _outputs.append

    def slow_append(partial: Path, chunks: Iterable[bytes]) -> None:
        writing.append(True)
        entered.set()
        go.wait(timeout=30)
        append(partial, chunks)
        writing.pop()

    monkeypatch.setattr(_outputs, "append", slow_append)
    still_writing: list[bool] = []

    async def save(scope: anyio.CancelScope) -> None:
        with scope:
            await result.save(tmp_path)
        still_writing.append(bool(writing))  # when the cancel came through
        ended.set()

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(save, scope)
        await loop.run_in_executor(None, entered.wait, 30)
        scope.cancel()
        # Long enough for a cancel that does not wait to come through (real time).
        assert not await loop.run_in_executor(None, ended.wait, 0.5)
        go.set()
    assert still_writing == [False]
    assert list(tmp_path.iterdir()) == []


# -- stems: used as given, or refused; never rewritten into another's name -------------

#: Stems that were rewritten before (two of them to one name: the second save replaced
#: the first, silently), now refused before anything is fetched or written.
REFUSED_STEMS = {
    ".": "a dot segment",
    "..": "a dot segment",
    "a/b": "cannot hold",
    "a\\b": "cannot hold",
    "x:y": "cannot hold",
    "a\x00b": "cannot hold|control",
    " ": "empty",
    "\u200f": "control or invisible",
    "tab\there": "control or invisible",
    "trailing.": "ends in a dot or a space",
    "s" * 201: "over 200",
    "é" * 101: "over 200",  # 202 bytes in UTF-8
}


@pytest.mark.parametrize("stem", list(REFUSED_STEMS), ids=repr)
async def test_a_stem_that_cannot_name_files_as_given_is_refused(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path, stem: str
) -> None:
    """InvalidRequestError naming save(stem) and why; nothing in the folder (a stem of 300
    characters raised a bare OSError, the temporary file's cleanup failing after the
    write did; '.' and '..' were both saved as output_0.png)."""
    result = await finished(client, emulator, base64=True)
    with pytest.raises(errors.InvalidRequestError, match=REFUSED_STEMS[stem]) as info:
        await result.save(tmp_path, stem=stem)
    assert "save(stem)" in info.value.message
    assert list(tmp_path.iterdir()) == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stems=st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=4, unique=True))
async def test_stems_accepted_are_used_as_given_and_never_share_a_file(
    client: AsyncFashn,
    emulator: Emulator,
    tmp_path_factory: pytest.TempPathFactory,
    stems: list[str],
) -> None:
    """Any text: a stem either names its file exactly (``<stem>_0.png``) or is refused;
    distinct stems accepted write distinct files, each kept."""
    result = await finished(client, emulator, base64=True)
    folder = tmp_path_factory.mktemp("stems")
    written: dict[str, Path] = {}
    for stem in stems:
        try:
            (path,) = await result.save(folder, stem=stem)
        except errors.InvalidRequestError:
            assert stem_problem(stem) is not None
            continue
        assert path.name == f"{stem}_0.png"
        written[stem] = path
    assert len(set(written.values())) == len(written)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in written.values())


async def test_an_id_that_cannot_name_files_is_saved_under_a_name_of_its_own(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path
) -> None:
    """The default stem is the prediction id as it is; an id no file name can hold (one
    with a ':' from a server) is rewritten with its hash, so two such ids never share."""
    result = await finished(client, emulator, base64=True)
    names = []
    for prediction_id in ("a:b", "a|b"):
        (path,) = await attrs.evolve(result, id=prediction_id).save(tmp_path)
        names.append(path.name)
    assert names[0] != names[1]
    assert all(name.startswith("a_b_") and name.endswith("_0.png") for name in names)
    (path,) = await result.save(tmp_path)
    assert path.name == f"{result.id}_0.png"


async def test_a_failed_cleanup_does_not_replace_the_failure(
    client: AsyncFashn, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails, then a temporary file that cannot be removed either (a name
    too long to have been made): the SaveError of the write comes out, not the cleanup's
    bare OSError."""
    result = await finished(client, emulator, base64=False)

    def too_long(*_: object, **__: object) -> None:
        raise OSError(36, "File name too long")

    monkeypatch.setattr(_outputs, "_start_partial", too_long)
    monkeypatch.setattr(Path, "unlink", too_long)
    with pytest.raises(errors.SaveError, match="File name too long"):
        await result.save(tmp_path)


async def test_a_download_on_a_kept_alive_connection_found_closed_is_sent_again(
    tmp_path: Path,
) -> None:
    """An output's GET on a kept-alive connection the CDN had closed is sent once more
    (RFC 9112 9.3.1): the client's sessions leave that to their callers (an API call
    sent again goes through its limiter), and downloads had none to do it."""
    png = sample_image("model")
    dropped = lambda n: n == 2  # noqa: E731 - the second, on the kept-alive connection
    async with (
        ClosingServer(png, "image/png", dropped) as server,
        AsyncFashn(api_key="test-key-0123", base_url=server.url) as client,
    ):
        for n in range(2):
            result = TryOnResult(
                id=f"p{n}", output=(f"{server.url}/o.png",), transport=client._transport
            )
            (saved,) = await result.save(tmp_path)
            assert saved.read_bytes() == png
    assert server.requests == 3
