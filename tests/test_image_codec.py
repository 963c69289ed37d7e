"""Derivatives: the fast path really decodes less, and orientation is applied."""

from __future__ import annotations

import io

from PIL import Image

from adapters.image_codec import decode_at_least, make_derivatives
from conftest import jpeg_bytes


def test_a_large_jpeg_is_never_decoded_at_full_size():
    data = jpeg_bytes(6000, 4000, seed=1)  # 24 megapixels
    decoded = decode_at_least(data, 1600)
    # DCT scaling picks 1/2: 3000x2000 ≥ 1600 px, a quarter of the pixels of a full decode.
    assert decoded.size == (3000, 2000)
    tiny = decode_at_least(data, 256)
    assert tiny.size == (750, 500)  # 1/8 scale, the smallest the decoder offers


def test_derivative_sizes_and_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = jpeg_bytes(3000, 2000, seed=2, exif=exif.tobytes())
    outputs = make_derivatives(data)
    preview = Image.open(io.BytesIO(outputs["preview"]))
    thumbnail = Image.open(io.BytesIO(outputs["thumbnail"]))
    assert preview.size == (1067, 1600)  # portrait once orientation is applied
    assert thumbnail.size == (171, 256)
