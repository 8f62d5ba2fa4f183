"""Saving outputs where the disk says no: a SaveError naming the path, nothing half-written."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path

import anyio
import pytest

from fashn_async import AsyncFashn, ModelRequest, TryOnResult, _outputs, errors
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
