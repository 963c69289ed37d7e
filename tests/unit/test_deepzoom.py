"""Tile pyramids are packed into one blob; the index finds every tile of every level."""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
from PIL import Image

from adapters.deepzoom import OVERLAP, TILE_SIZE, UntileableImage, make_pyramid


def _jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def test_every_tile_of_every_level_is_in_the_pack():
    pyramid = make_pyramid(_jpeg(2600, 1300))
    top = math.ceil(math.log2(2600))
    assert (pyramid.width, pyramid.height) == (2600, 1300)
    columns, rows = math.ceil(2600 / TILE_SIZE), math.ceil(1300 / TILE_SIZE)
    expected = {f"{top}/{c}_{r}.jpg" for c in range(columns) for r in range(rows)}
    assert expected <= set(pyramid.index)
    assert "0/0_0.jpg" in pyramid.index
    offset, length = pyramid.index[f"{top}/{columns - 1}_{rows - 1}.jpg"]
    corner = Image.open(io.BytesIO(pyramid.pack[offset:offset + length]))
    assert corner.size == (2600 - (columns - 1) * TILE_SIZE + OVERLAP,
                           1300 - (rows - 1) * TILE_SIZE + OVERLAP)
    spans = sorted(pyramid.index.values())
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert spans[-1][0] + spans[-1][1] == len(pyramid.pack)


def test_mirror_views_are_flipped_in_the_tiles():
    pixels = np.zeros((1000, 1000, 3), dtype=np.uint8)
    pixels[:, :100] = 255  # a white band on the left
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    pyramid = make_pyramid(buffer.getvalue(), "horizontal")
    level = math.ceil(math.log2(1000))
    offset, length = pyramid.index[f"{level}/3_0.jpg"]
    right = np.asarray(Image.open(io.BytesIO(pyramid.pack[offset:offset + length])))
    assert right[:, -50:].mean() > 200  # the band is now on the right


def test_a_file_libvips_cannot_read_is_untileable():
    with pytest.raises(UntileableImage):
        make_pyramid(b"\xff\xd8\xff\xe0 truncated jpeg")
