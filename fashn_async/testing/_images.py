"""Images the emulator reads, draws and returns (Pillow, called off the event loop).

Everything here is synchronous and CPU-bound: callers run it in the loop's executor.
"""

from __future__ import annotations

import base64
import ipaddress
import random
from io import BytesIO

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageOps

__all__ = [
    "UnreadableImage",
    "data_uri",
    "is_loopback_host",
    "render_outputs",
    "sample_image",
]

#: Larger inputs are refused as unreadable: the emulator is not an image server.
MAX_INPUT_PIXELS = 40_000_000
#: Outputs are the model image's size, shrunk to fit this square.
MAX_OUTPUT_EDGE = 1024

_MIME = {"png": "image/png", "jpeg": "image/jpeg"}
_SAMPLE_KINDS = ("model", "garment")
# Where a garment lands on the model image, as fractions (left, top, right, bottom).
_PLACEMENT = {
    "tops": (0.27, 0.24, 0.73, 0.56),
    "bottoms": (0.31, 0.52, 0.69, 0.92),
    "one-pieces": (0.27, 0.24, 0.73, 0.86),
}


class UnreadableImage(Exception):
    """Input bytes Pillow cannot read as an image."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_loopback_host(host: str | None) -> bool:
    """Return whether ``host`` names this machine: ``localhost``, 127.0.0.0/8 or ::1.

    Decided from the text alone; nothing is resolved.
    """
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def data_uri(data: bytes, output_format: str) -> str:
    """Return ``data`` as a ``data:image/...;base64,`` URI."""
    return f"data:{_MIME[output_format]};base64,{base64.b64encode(data).decode('ascii')}"


def open_image(data: bytes) -> Image.Image:
    """Decode ``data`` fully, or raise UnreadableImage saying why."""
    try:
        image = Image.open(BytesIO(data))
        width, height = image.size
    except Exception as exc:  # Pillow raises many kinds on corrupt data
        raise UnreadableImage(f"cannot identify image file ({type(exc).__name__})") from None
    if width * height > MAX_INPUT_PIXELS:
        raise UnreadableImage(f"image of {width}x{height} pixels is too large")
    try:
        image.load()
    except Exception as exc:
        raise UnreadableImage(f"truncated or corrupt image ({type(exc).__name__})") from None
    return image


def _encode(image: Image.Image, output_format: str) -> bytes:
    buffer = BytesIO()
    if output_format == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _garment_layer(garment: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """Crop the garment to its shape, fit it into ``size``, mask out its background."""
    rgba = garment.convert("RGBA")
    shape = rgba.convert("L").point(lambda value: 0 if value > 235 else 255)
    mask = ImageChops.multiply(shape, rgba.getchannel("A"))
    bbox = mask.getbbox()
    if bbox is not None:
        rgba, mask = rgba.crop(bbox), mask.crop(bbox)
    return ImageOps.contain(rgba, size).convert("RGB"), ImageOps.contain(mask, size)


def render_outputs(
    images: tuple[bytes, ...],
    *,
    category: str,
    num_samples: int,
    seed: int,
    output_format: str,
    render: bool = True,
) -> tuple[bytes, ...]:
    """Check the inputs and draw the outputs: the garment laid over the model.

    Args:
        images: Input image bytes; the first is the person (model), the second the garment.
        category: ``tops``, ``bottoms`` or ``one-pieces``: where the garment goes.
        num_samples: How many outputs; each differs a little, from ``seed``.
        seed: The submission's seed: the same inputs and seed give the same outputs.
        output_format: ``png`` or ``jpeg``.
        render: False to only check that the inputs are images.

    Raises:
        UnreadableImage: With the index of the unreadable input as ``args[1]``.
    """
    opened: list[Image.Image] = []
    for index, data in enumerate(images):
        try:
            opened.append(open_image(data))
        except UnreadableImage as exc:
            exc.args = (exc.reason, index)
            raise
    if not render:
        return ()
    if opened:
        base = opened[0].convert("RGB")
    else:
        base = Image.open(BytesIO(sample_image("model", seed=seed))).convert("RGB")
    base.thumbnail((MAX_OUTPUT_EDGE, MAX_OUTPUT_EDGE))
    width, height = base.size
    layer: tuple[Image.Image, Image.Image, tuple[int, int]] | None = None
    if len(opened) > 1:
        left, top, right, bottom = _PLACEMENT.get(category, _PLACEMENT["tops"])
        box = (max(int((right - left) * width), 1), max(int((bottom - top) * height), 1))
        garment, mask = _garment_layer(opened[1], box)
        x = int(left * width) + (box[0] - garment.width) // 2
        y = int(top * height) + (box[1] - garment.height) // 2
        layer = (garment, mask, (x, y))
    outputs: list[bytes] = []
    for sample in range(num_samples):
        rng = random.Random(f"{seed}:{sample}")  # noqa: S311 - seeded drawing
        out = base.copy()
        if layer is not None:
            garment, mask, where = layer
            tinted = ImageEnhance.Brightness(garment).enhance(0.85 + 0.3 * rng.random())
            out.paste(tinted, where, mask)
        else:
            out = ImageEnhance.Brightness(out).enhance(0.9 + 0.2 * rng.random())
        outputs.append(_encode(out, output_format))
    return tuple(outputs)


def _colour(rng: random.Random, low: int, high: int) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _draw_model(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int) -> None:
    skin = rng.choice([(241, 194, 167), (224, 172, 105), (198, 134, 66), (141, 85, 36)])
    shirt, trousers = _colour(rng, 40, 200), _colour(rng, 20, 120)
    cx = w / 2
    draw.rectangle((0, int(h * 0.93), w, h), fill=(150, 140, 130))
    # Legs and shoes.
    for side in (-1, 1):
        x0 = cx + side * w * 0.02 if side > 0 else cx - w * 0.15
        draw.rectangle((x0, h * 0.54, x0 + w * 0.13, h * 0.92), fill=trousers)
        draw.ellipse((x0 - w * 0.02, h * 0.9, x0 + w * 0.15, h * 0.95), fill=(30, 30, 30))
    # Arms, torso, neck, head, hair.
    draw.rounded_rectangle(
        (cx - w * 0.27, h * 0.25, cx - w * 0.18, h * 0.58), radius=int(w * 0.04), fill=skin
    )
    draw.rounded_rectangle(
        (cx + w * 0.18, h * 0.25, cx + w * 0.27, h * 0.58), radius=int(w * 0.04), fill=skin
    )
    draw.rounded_rectangle(
        (cx - w * 0.19, h * 0.23, cx + w * 0.19, h * 0.57), radius=int(w * 0.05), fill=shirt
    )
    draw.rectangle((cx - w * 0.04, h * 0.18, cx + w * 0.04, h * 0.24), fill=skin)
    draw.ellipse((cx - w * 0.09, h * 0.06, cx + w * 0.09, h * 0.2), fill=skin)
    draw.chord(
        (cx - w * 0.095, h * 0.05, cx + w * 0.095, h * 0.16), 180, 360, fill=_colour(rng, 10, 90)
    )


def _draw_garment(draw: ImageDraw.ImageDraw, rng: random.Random, w: int, h: int) -> None:
    colour = _colour(rng, 30, 220)
    # A T-shirt seen flat: body, sleeves, neckline.
    draw.polygon(
        [
            (w * 0.30, h * 0.18),
            (w * 0.08, h * 0.32),
            (w * 0.16, h * 0.45),
            (w * 0.27, h * 0.39),
            (w * 0.27, h * 0.85),
            (w * 0.73, h * 0.85),
            (w * 0.73, h * 0.39),
            (w * 0.84, h * 0.45),
            (w * 0.92, h * 0.32),
            (w * 0.70, h * 0.18),
        ],
        fill=colour,
    )
    draw.ellipse((w * 0.40, h * 0.13, w * 0.60, h * 0.24), fill=(255, 255, 255))
    stripe = tuple(min(c + 60, 255) for c in colour)
    draw.rectangle((w * 0.27, h * 0.55, w * 0.73, h * 0.6), fill=stripe)


def sample_image(kind: str, *, seed: int = 0, size: tuple[int, int] = (384, 512)) -> bytes:
    """Draw a sample input image, as PNG bytes.

    Args:
        kind: ``model`` (a person-like figure on a plain background) or ``garment`` (a
            T-shirt on white, as a flat-lay photo).
        seed: Picks the colours: the same seed draws the same image.
        size: Width and height in pixels.

    Raises:
        ValueError: Unknown ``kind`` or a size below 16 pixels.
    """
    if kind not in _SAMPLE_KINDS:
        raise ValueError(f"kind must be 'model' or 'garment', got {kind!r}")
    width, height = size
    if width < 16 or height < 16:
        raise ValueError(f"size must be at least 16x16, got {size!r}")
    rng = random.Random(f"{kind}:{seed}")  # noqa: S311 - seeded drawing
    background = _colour(rng, 170, 240) if kind == "model" else (255, 255, 255)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    if kind == "model":
        _draw_model(draw, rng, width, height)
    else:
        _draw_garment(draw, rng, width, height)
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
