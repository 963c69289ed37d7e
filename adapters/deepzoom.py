"""DeepZoom tile pyramids (``.dzi`` + tiles) for large images, made by libvips ``dzsave``.

A 24-megapixel photo or a 21-megapixel ceph film opens instantly in a viewer that fetches
only the tiles it shows. Tiles go into the blob store like every other derivative
(encrypted with the image's key); a manifest lists each tile's hash and size.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TILE_SIZE = 254
OVERLAP = 1
MIN_PIXELS = 4_000_000  # smaller images are served whole by the preview


@dataclass(frozen=True)
class Pyramid:
    width: int
    height: int
    tiles: list[tuple[str, bytes]]  # ("<level>/<col>_<row>.jpg", JPEG bytes)


def wants_tiles(width: int, height: int) -> bool:
    return width * height > MIN_PIXELS


def make_pyramid(data: bytes, mirror_axis: str | None = None) -> Pyramid:
    import pyvips  # heavy native import: only the worker that tiles needs it

    image = pyvips.Image.new_from_buffer(data, "", access="sequential").autorot()
    if mirror_axis == "vertical":
        image = image.flipver()
    elif mirror_axis == "horizontal":
        image = image.fliphor()
    with tempfile.TemporaryDirectory() as folder:
        image.dzsave(str(Path(folder) / "image"), tile_size=TILE_SIZE, overlap=OVERLAP,
                     suffix=".jpg[Q=85]")
        tiles = list(_tiles(Path(folder) / "image_files"))
    return Pyramid(width=image.width, height=image.height, tiles=tiles)


def _tiles(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*.jpg")):
        yield f"{path.parent.name}/{path.name}", path.read_bytes()


def dzi_xml(width: int, height: int) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpg" '
        f'Overlap="{OVERLAP}" TileSize="{TILE_SIZE}">'
        f'<Size Width="{width}" Height="{height}"/></Image>\n'
    )
