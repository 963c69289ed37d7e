"""DeepZoom tile pyramids (``.dzi`` + tiles) for large images, made by libvips ``dzsave``.

A 24-megapixel photo or a 21-megapixel ceph film opens instantly in a viewer that fetches
only the tiles it shows. The ~500 tiles of a pyramid are packed into one blob (encrypted
with the image's key like every derivative) plus a small index of each tile's offset and
length: one sealed write per image instead of one fsynced file per tile, which made tiling
slower than decoding.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

TILE_SIZE = 254
OVERLAP = 1
MIN_PIXELS = 4_000_000  # smaller images are served whole by the preview
PACK_FORMAT = "tile-pack/1"


class UntileableImage(ValueError):
    """libvips could not decode or tile the file."""


@dataclass(frozen=True)
class Pyramid:
    width: int
    height: int
    pack: bytes  # every tile's JPEG bytes, back to back
    index: dict[str, tuple[int, int]]  # "<level>/<col>_<row>.jpg" -> (offset, length)


def wants_tiles(width: int, height: int) -> bool:
    return width * height > MIN_PIXELS


def make_pyramid(data: bytes, mirror_axis: str | None = None) -> Pyramid:
    import pyvips  # heavy native import: only the worker that tiles needs it

    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential").autorot()
        if mirror_axis == "vertical":
            image = image.flipver()
        elif mirror_axis == "horizontal":
            image = image.fliphor()
        # An uncompressed zip in memory: no temporary files, tiles already JPEG-compressed.
        archive = image.dzsave_buffer(tile_size=TILE_SIZE, overlap=OVERLAP,
                                      suffix=".jpg[Q=85]", container="zip", compression=0)
    except pyvips.Error as error:
        raise UntileableImage(str(error).splitlines()[0]) from error
    return pack_tiles(image.width, image.height, archive)


def pack_tiles(width: int, height: int, archive: bytes) -> Pyramid:
    pack = io.BytesIO()
    index: dict[str, tuple[int, int]] = {}
    with zipfile.ZipFile(io.BytesIO(archive)) as members:
        for info in sorted(members.infolist(), key=lambda member: member.filename):
            parts = info.filename.split("/")
            # "<name>/<name>_files/<level>/<col>_<row>.jpg"; skip the .dzi and properties.
            if len(parts) < 3 or not parts[-1].endswith(".jpg") or not parts[-3].endswith(
                    "_files"):
                continue
            tile = members.read(info)
            index[f"{parts[-2]}/{parts[-1]}"] = (pack.tell(), len(tile))
            pack.write(tile)
    return Pyramid(width=width, height=height, pack=pack.getvalue(), index=index)


def dzi_xml(width: int, height: int) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpg" '
        f'Overlap="{OVERLAP}" TileSize="{TILE_SIZE}">'
        f'<Size Width="{width}" Height="{height}"/></Image>\n'
    )
