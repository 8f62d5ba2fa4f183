"""A sample catalog for the demo: drawn model and garment images, and a CSV naming them."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["write_sample_catalog"]

#: The sample garments are all T-shirts (``sample_image("garment")``): tops, every one.
CATEGORY = "tops"


def write_sample_catalog(folder: Path, rows: int) -> Path:
    """Write ``rows`` try-ons (3 models x as many garments as needed) into ``folder``.

    The images and the CSV are the same bytes every time, so a re-run finds the same
    catalog. Returns the CSV's path.
    """
    from fashn_async.testing import sample_image

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    models = min(rows, 3)
    garments = -(-rows // models)
    for i in range(models):
        (images / f"model_{i + 1}.png").write_bytes(sample_image("model", seed=i))
    for j in range(garments):
        (images / f"garment_{j + 1:03d}.png").write_bytes(sample_image("garment", seed=100 + j))
    catalog = folder / "catalog.csv"
    with catalog.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "model_image", "garment_image", "category"])
        for n in range(rows):
            model, garment = n % models + 1, n // models + 1
            writer.writerow(
                [
                    f"look-{n + 1:03d}",
                    f"images/model_{model}.png",
                    f"images/garment_{garment:03d}.png",
                    CATEGORY,
                ]
            )
    return catalog
