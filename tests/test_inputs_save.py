"""Saving outputs where the disk says no: a SaveError naming the path, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from fashn_async import AsyncFashn, ModelRequest, TryOnResult, errors
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
