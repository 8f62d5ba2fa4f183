"""Benchmark: bytes sent and client CPU per request for a 6000x4000 phone photo.

A synthetic phone photo (6000x4000, smooth gradients with sensor-like noise, JPEG q92,
EXIF orientation 6) is made with Pillow. N requests each send a *different* copy of it
(one pixel changed, so no cache can help) as ``model_image`` to an emulator in its own
process (zero latency, no limits, 64 MiB bodies), through ``client.submit``:

* without preparation: the bytes as given (today's behaviour);
* with ``prepare_images=ImagePreparation()``: oriented, downscaled to 2000 px on the
  longest edge, re-encoded JPEG q95 (NOTES.md);
* with preparation, the same photo every time: what a batch pairing one model photo
  with many garments pays per request once the photo is cached.

Bytes sent = the exact JSON body of POST /v1/run. CPU = user + system seconds of this
whole process (every thread, so the preparation's worker threads count) around the N
submits, divided by N.

    python benchmarks/bench_images.py [--quick] [--n 8]
"""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import time
from typing import Any

import _harness as h

NAME = "images"
SIZE = (6000, 4000)


def phone_photo() -> bytes:
    """A 6000x4000 JPEG that compresses like a photo (gradients, noise), EXIF-rotated."""
    from PIL import Image, ImageFilter

    small = Image.frombytes("RGB", (60, 40), random.Random(3).randbytes(60 * 40 * 3))
    base = small.resize(SIZE, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(8))
    grain = Image.effect_noise(SIZE, 24).convert("RGB")
    photo = Image.blend(base, grain, 0.12)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=92, exif=exif.tobytes())
    return out.getvalue()


def variant(photo: bytes, index: int) -> bytes:
    """``photo`` with a JPEG comment segment added: a distinct file, the same image."""
    text = f"copy {index}".encode()
    return photo[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + photo[2:]


async def measure(url: str, photo: bytes, n: int, mode: str) -> dict[str, Any]:
    """N submits of the photo in ``mode``; bytes per body and CPU per request."""
    from fashn_async import AsyncFashn, ImagePreparation, Limits, TryOnRequest
    from fashn_async._payload import prepare_request

    prepare = None if mode == "as given" else ImagePreparation()
    garment = h.tiny_png()
    photos = [photo if mode == "prepared, one photo" else variant(photo, i) for i in range(n)]
    limits = Limits(submit=None, status=None, credits=None, in_flight=None, margin=0.0)
    async with AsyncFashn(
        api_key=h._KEY, base_url=url, limits=limits, prepare_images=prepare
    ) as client:
        body = await prepare_request(  # with a preparer of its own: the cache stays cold
            TryOnRequest(model_image=photos[0], garment_image=garment, category="tops"),
            preparer=prepare.preparer() if prepare else None,
        )
        if mode == "prepared, one photo":  # the cache is warm from here on
            await client.submit(model_image=photo, garment_image=garment, category="tops")
        cpu, wall = time.process_time(), time.perf_counter()
        for data in photos:
            await client.submit(model_image=data, garment_image=garment, category="tops")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "mode": mode,
        "n": n,
        "photo_bytes": len(photo),
        "body_bytes": len(body.payload),
        "cpu_ms_per_request": 1000 * cpu / n,
        "wall_ms_per_request": 1000 * wall / n,
    }


def main() -> None:
    args_parser = h.parser(__doc__.splitlines()[0])
    args_parser.add_argument("--n", type=int, help="requests per mode (default 8)")
    args_parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    args = args_parser.parse_args()
    n = args.n or (3 if args.quick else 8)
    rounds = args.rounds or (1 if args.quick else 3)
    started = time.monotonic()
    info = h.machine()
    photo = phone_photo()
    config = h.emulator_config(scale=1.0, latency=(0.0, 0.0), limits=False)
    config["max_body_bytes"] = 64 * 2**20
    modes = ("as given", "prepared", "prepared, one photo")
    runs = []
    with h.emulator(config) as emu:
        for _ in range(rounds):
            for mode in modes:
                runs.append(asyncio.run(measure(emu.url, photo, n, mode)))
        accepted = len(emu.report()["accepted"])
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            "body_bytes": mine[0]["body_bytes"],
            "cpu_ms": statistics.median(r["cpu_ms_per_request"] for r in mine),
        }
        rows.append(
            [
                mode,
                mine[0]["body_bytes"] / 2**20,
                summary[mode]["cpu_ms"],
                " ".join(f"{r['cpu_ms_per_request']:.0f}" for r in mine),
                statistics.median(r["wall_ms_per_request"] for r in mine),
            ]
        )
    given, prepared = summary["as given"], summary["prepared"]
    cached = summary["prepared, one photo"]
    text = (
        f"Image preparation: a {SIZE[0]}x{SIZE[1]} phone photo "
        f"({len(photo) / 2**20:.1f} MiB JPEG), N={n} requests per mode, {rounds} rounds "
        f"({accepted} accepted by the emulator)\n"
        + h.table(
            ["mode", "body MiB/request", "CPU ms/request (median)", "each round", "wall ms/req"],
            rows,
        )
    )
    verdicts = [
        f"bytes sent: prepared / as given = {prepared['body_bytes'] / given['body_bytes']:.3f}",
        f"client CPU: prepared / as given = {prepared['cpu_ms'] / given['cpu_ms']:.2f}; "
        f"cached photo / as given = {cached['cpu_ms'] / given['cpu_ms']:.3f}",
    ]
    h.report(
        args.results,
        NAME,
        info=info,
        goal="report bytes sent and client CPU per request, with and without preparation",
        runs=runs,
        text=text,
        verdicts=verdicts,
        started=started,
    )


if __name__ == "__main__":
    main()
