"""Report thumbnails of very large images: memory bounded, nothing printed by Pillow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from fashn_async.bulk._thumbs import BIG_PIXELS, thumbnail, thumbnails

#: The child measures its own resident memory before and after making the thumbnails.
_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from fashn_async.bulk._thumbs import thumbnails

    def rss_kib():
        status = Path("/proc/self/status").read_text()
        return int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1])

    sources, out = [Path(p) for p in sys.argv[2:]], Path(sys.argv[1])
    before = rss_kib()
    made = thumbnails(sources, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grew_kib": peak - before, "made": [str(made[s]) for s in sources]}))
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_thumbnails_of_large_pngs_are_made_one_at_a_time(tmp_path: Path) -> None:
    """Four 24-megapixel PNGs (96 MB each once decoded) in four threads: every thumbnail
    is made, and memory grows by about one decoded image, under four, not eight."""
    width, height = 6000, 4000
    assert width * height > BIG_PIXELS
    sources = []
    for n in range(4):
        path = tmp_path / f"huge{n}.png"
        Image.new("RGB", (width, height), (10, 200, 30 + n)).save(path, compress_level=1)
        sources.append(str(path))
    child = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", _MEASURE, str(tmp_path / "out"), *sources],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(child.stdout)
    assert all(Path(made).is_file() for made in result["made"]), result
    decoded_kib = width * height * 4 // 1024  # Pillow keeps RGB in 4 bytes a pixel
    # One at a time: about one decoded image (97 MB measured alone, up to 297 MB with the
    # machine loaded: the allocator's arenas); four at once grew 737 MB, eight images.
    assert result["grew_kib"] < 4 * decoded_kib, result
    assert child.stderr == ""


def test_no_bomb_warning_is_printed_and_a_bomb_gets_no_thumbnail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image past Pillow's warning limit gets its thumbnail without a warning (the
    suite turns warnings into errors); one past twice the limit gets none, nothing read."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # Pillow's, not ours
    Image.new("RGB", (80, 80), "red").save(tmp_path / "near.png")  # 6,400 pixels
    Image.new("RGB", (120, 100), "red").save(tmp_path / "bomb.png")  # 12,000 pixels
    assert isinstance(thumbnail(tmp_path / "near.png", tmp_path / "out"), Path)
    assert thumbnail(tmp_path / "bomb.png", tmp_path / "out") is None
    made = thumbnails([tmp_path / "near.png", tmp_path / "bomb.png"], tmp_path / "out")
    assert isinstance(made[tmp_path / "near.png"], Path)
    assert made[tmp_path / "bomb.png"] is None
