"""Mesh adapter against the real STL/PLY/OBJ files in shared/testdata/meshes plus made-up ones.

Recorded: 28 files; 24 load, 4 are ``mesh_empty`` (empty.stl and the three emptyIO files).
busted.STL, despite its name, is a complete closed tooth crown (trimesh uses it for
registration tests), so it loads.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from adapters.mesh_codec import (
    MeshFormat,
    MeshInfo,
    arch_from_name,
    load_mesh,
    render_thumbnail,
    to_glb,
)
from domain.errors import OrthovaultError, TooLarge, Unprocessable, UnsupportedMedia

TESTDATA = Path(
    os.environ.get("ORTHOVAULT_TESTDATA", Path(__file__).resolve().parents[3] / "shared/testdata")
)
MESHES = TESTDATA / "meshes"
CODES = {"mesh_empty", "mesh_truncated", "mesh_invalid", "mesh_too_large"}


def _read(relative: str) -> bytes:
    return (MESHES / relative).read_bytes()


def _load(relative: str) -> MeshInfo:
    return load_mesh(_read(relative), Path(relative).name)


def _code(data: bytes, filename: str, **kwargs: int) -> str:
    try:
        load_mesh(data, filename, **kwargs)
    except OrthovaultError as exc:
        return exc.code
    return "ok"


Triangle = list[tuple[float, float, float]]


def _binary_stl(triangles: list[Triangle], count: int | None = None) -> bytes:
    header = b"made in a test".ljust(80, b" ")
    records = b"".join(
        struct.pack("<3f", 0, 0, 0) + b"".join(struct.pack("<3f", *c) for c in t) + b"\0\0"
        for t in triangles
    )
    return header + struct.pack("<I", len(triangles) if count is None else count) + records


# --- every shared file ----------------------------------------------------------------------

EXPECTED = {
    "trimesh/empty.stl": "mesh_empty",
    "trimesh/emptyIO/ply_empty_header.ply": "mesh_empty",
    "trimesh/emptyIO/stl_empty_ascii.stl": "mesh_empty",
    "trimesh/emptyIO/stl_empty_bin.stl": "mesh_empty",
}


def test_every_shared_mesh_loads_or_fails_clearly() -> None:
    assert MESHES.is_dir(), f"test meshes missing: {MESHES} (set ORTHOVAULT_TESTDATA)"
    paths = sorted(
        p for p in MESHES.rglob("*") if p.is_file() and p.suffix.lower() in {".stl", ".ply", ".obj"}
    )
    table: dict[str, str] = {}
    for path in paths:
        relative = path.relative_to(MESHES).as_posix()
        try:
            info = load_mesh(path.read_bytes(), path.name)
        except OrthovaultError as exc:
            assert exc.code in CODES, (relative, exc.code)
            table[relative] = exc.code
            continue
        stats = info.stats
        assert stats.triangles > 0 and stats.vertices > 0 and stats.surface_area_mm2 > 0
        assert all(size >= 0 for size in stats.size_mm) and stats.body_count >= 1
        assert stats.units == "mm"
        table[relative] = (
            f"ok {info.format.value} tri={stats.triangles} watertight={stats.watertight} "
            f"bodies={stats.body_count}"
        )
    report = "\n".join(f"{name:45s} {outcome}" for name, outcome in table.items())
    print(report)
    assert len(table) >= 28, report
    for name, outcome in table.items():
        assert outcome == EXPECTED.get(name, outcome), report
        assert outcome.startswith("ok") or name in EXPECTED, report


# --- statistics -----------------------------------------------------------------------------


def test_calibration_cube_statistics() -> None:
    info = _load("trimesh/20mm-xyz-cube.stl")
    stats = info.stats
    assert info.format is MeshFormat.STL_BINARY
    assert stats.size_mm == pytest.approx((20.0, 20.0, 20.0), abs=1e-3)
    assert stats.watertight and stats.body_count == 1
    # Engraved X/Y/Z letters take a little volume away and add a little area.
    assert 7800 < stats.volume_mm3 < 8000  # type: ignore[operator]
    assert 2400 < stats.surface_area_mm2 < 2600


@pytest.mark.parametrize(
    ("relative", "fmt"),
    [
        ("numpy-stl/stl_ascii/Cube.stl", MeshFormat.STL_ASCII),
        ("numpy-stl/stl_binary/CubeInvalidUnicode.stl", MeshFormat.STL_BINARY),
    ],
)
def test_two_millimetre_cube_is_exact(relative: str, fmt: MeshFormat) -> None:
    info = _load(relative)
    assert info.format is fmt
    assert info.stats.triangles == 12 and info.stats.vertices == 8
    assert info.stats.volume_mm3 == pytest.approx(8.0)
    assert info.stats.surface_area_mm2 == pytest.approx(24.0)
    assert info.stats.bbox_min_mm == (0.0, 0.0, 0.0)
    assert info.stats.bbox_max_mm == (2.0, 2.0, 2.0)


def test_binary_stl_with_solid_header_is_read_as_binary() -> None:
    info = _load("numpy-stl/stl_binary/HalfDonut.stl")  # header starts "solid", one spare byte
    assert info.format is MeshFormat.STL_BINARY
    assert info.stats.triangles == _load("numpy-stl/stl_ascii/HalfDonut.stl").stats.triangles


def test_triangle_soup_is_not_watertight() -> None:
    stats = _load("trimesh/soup.stl").stats
    assert not stats.watertight and stats.volume_mm3 is None
    assert stats.body_count == stats.triangles == 100


def test_multibody_counts_bodies() -> None:
    assert _load("trimesh/multibody.stl").stats.body_count == 2


def test_busted_tooth_loads_as_a_closed_crown() -> None:
    stats = _load("trimesh/busted.STL").stats
    assert stats.triangles == 3878 and stats.watertight and stats.body_count == 1
    assert all(9 < size < 12 for size in stats.size_mm)  # a molar crown, in mm


def test_ply_and_obj_load() -> None:
    assert _load("trimesh/bunny.ply").format is MeshFormat.PLY  # binary PLY
    assert _load("trimesh/fuze_ascii.ply").stats.triangles == 1000  # ASCII PLY with texture
    cube = _load("trimesh/negative_indices.obj")  # relative (negative) OBJ indices are legal
    assert cube.format is MeshFormat.OBJ and cube.stats.volume_mm3 == pytest.approx(8.0)


@pytest.mark.parametrize(
    "relative",
    [
        "trimesh/empty.stl",
        "trimesh/emptyIO/ply_empty_header.ply",
        "trimesh/emptyIO/stl_empty_ascii.stl",
        "trimesh/emptyIO/stl_empty_bin.stl",
    ],
)
def test_empty_files_are_mesh_empty(relative: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        _load(relative)
    assert caught.value.code == "mesh_empty"


# --- damaged and hostile input --------------------------------------------------------------


def test_binary_stl_cut_short_is_truncated() -> None:
    data = _read("trimesh/20mm-xyz-cube.stl")
    assert _code(data[:-30], "cube.stl") == "mesh_truncated"
    assert _code(data[: 84 + 50 * 5 + 10], "cube.stl") == "mesh_truncated"
    assert _code(data[:60], "cube.stl") == "mesh_truncated"


def test_header_claiming_more_triangles_than_present_is_truncated() -> None:
    triangle = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]
    assert _code(_binary_stl([triangle], count=1000), "x.stl") == "mesh_truncated"
    assert _code(_binary_stl([triangle] * 5, count=2), "x.stl") == "mesh_invalid"


def test_ascii_stl_and_ply_cut_short_are_truncated() -> None:
    ascii_stl = _read("numpy-stl/stl_ascii/HalfDonut.stl")
    assert _code(ascii_stl[: len(ascii_stl) // 2], "half.stl") == "mesh_truncated"
    binary_ply = _load("trimesh/torus.STL").mesh.export(file_type="ply", encoding="binary")
    assert _code(binary_ply, "torus.ply") == "ok"
    for name, ply in [
        ("bunny.ply", _read("trimesh/bunny.ply")),
        ("fuze_ascii.ply", _read("trimesh/fuze_ascii.ply")),
        ("torus.ply", binary_ply),
    ]:
        assert _code(ply[: len(ply) // 2], name) == "mesh_truncated", name
        assert _code(ply[:-20], name) == "mesh_truncated", name  # inside the last face


def test_face_limit_is_enforced() -> None:
    with pytest.raises(TooLarge) as caught:
        load_mesh(_read("trimesh/20mm-xyz-cube.stl"), "cube.stl", max_faces=100)
    assert caught.value.code == "mesh_too_large"
    ascii_stl = _read("numpy-stl/stl_ascii/HalfDonut.stl")
    assert _code(ascii_stl, "d.stl", max_faces=100) == "mesh_too_large"


def test_nan_vertices_and_degenerate_faces_are_counted_and_dropped() -> None:
    good = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]
    nan = [(0.0, 0.0, 0.0), (float("nan"), 0.0, 0.0), (0.0, 1.0, 1.0)]
    repeated = [(0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 1.0, 1.0)]
    collinear = [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)]
    info = load_mesh(_binary_stl([good, nan, repeated, collinear]), "n.stl")
    stats = info.stats
    assert stats.triangles == 4
    assert stats.non_finite_vertices == 1
    assert stats.degenerate_faces == 2
    assert len(info.mesh.faces) == 1 and stats.surface_area_mm2 == pytest.approx(0.5)
    only_nan = _binary_stl([nan])
    assert _code(only_nan, "n.stl") == "mesh_invalid"


PLY_HEADER = (
    b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
    b"property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
    b"0 0 0\n1 0 0\n0 1 0\n"
)


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99\n", "oob.obj"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -9\n", "negative.obj"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "zero.obj"),
        (PLY_HEADER + b"3 0 1 7\n", "oob.ply"),
        (PLY_HEADER + b"3 0 1 -1\n", "negative.ply"),
    ],
)
def test_index_errors_are_invalid(data: bytes, filename: str) -> None:
    assert _code(data, filename) == "mesh_invalid"


def test_unknown_bytes_are_unsupported() -> None:
    with pytest.raises(UnsupportedMedia) as caught:
        load_mesh(b"GIF89a" + bytes(200), "picture.gif")
    assert caught.value.code == "mesh_unsupported_format"
    assert _code(os.urandom(1000), "noise.stl") in {"mesh_truncated", "mesh_invalid"}


FUZZ_SOURCES = ["trimesh/20mm-xyz-cube.stl", "numpy-stl/stl_ascii/Cube.stl", "trimesh/sphere.ply"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(FUZZ_SOURCES) - 1),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6),
)
def test_damaged_meshes_only_raise_our_errors(
    which: int, cut: float, flips: list[tuple[float, int]]
) -> None:
    source = _read(FUZZ_SOURCES[which])
    data = bytearray(source[: max(1, int(len(source) * cut))])
    for where, value in flips:
        data[min(len(data) - 1, int(where * len(data)))] = value
    outcome = _code(bytes(data), Path(FUZZ_SOURCES[which]).name)
    assert outcome in CODES | {"ok", "mesh_unsupported_format"}


# --- derivatives ----------------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["trimesh/20mm-xyz-cube.stl", "trimesh/busted.STL"])
def test_thumbnail_is_square_and_not_blank(relative: str) -> None:
    image = render_thumbnail(_load(relative))
    assert isinstance(image, Image.Image) and image.size == (256, 256) and image.mode == "RGB"
    pixels = np.asarray(image).astype(int)
    drawn = (pixels != 255).any(axis=2)
    assert 0.1 < drawn.mean() < 0.95
    assert pixels[drawn].std() > 5  # shaded, not a flat silhouette


def test_thumbnail_size_is_configurable() -> None:
    assert render_thumbnail(_load("trimesh/soup.stl").mesh, size=96).size == (96, 96)


def test_glb_is_binary_gltf_with_the_same_faces_in_metres() -> None:
    info = _load("trimesh/20mm-xyz-cube.stl")
    glb = to_glb(info)
    assert glb[:4] == b"glTF"
    reloaded = trimesh.load_mesh(io.BytesIO(glb), file_type="glb")
    assert len(reloaded.faces) == len(info.mesh.faces) == info.stats.triangles
    assert reloaded.extents == pytest.approx((0.02, 0.02, 0.02), abs=1e-6)
    assert len(glb) < len(_read("trimesh/20mm-xyz-cube.stl"))
    assert to_glb(info, include_normals=False)[:4] == b"glTF"


# --- arch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "metadata", "arch"),
    [
        ("UpperJaw.stl", None, "upper"),
        ("20240101_Smith_LowerJaw.stl", None, "lower"),
        ("Raw Preparation scan - UpperJawScan.ply", None, "upper"),
        ("maxillary_model.stl", None, "upper"),
        ("Mandibular.obj", None, "lower"),
        ("Maxilla.stl", None, "upper"),
        ("case 12 - lower.STL", None, "lower"),
        ("Oberkiefer.stl", None, "upper"),
        ("Unterkiefer.stl", None, "lower"),
        ("export_1234_u.stl", None, "upper"),
        ("export_1234_l.stl", None, "lower"),
        ("l.stl", None, None),
        ("BiteScan.stl", None, None),
        ("upper_and_lower.stl", None, None),
        ("model.stl", {"jaw": "Maxilla"}, "upper"),
        ("model.stl", {"arch": "LowerJaw"}, "lower"),
        ("model.stl", {"comment": "upper"}, None),  # only arch-like keys are read
        ("UpperJaw.stl", {"arch": "lower"}, "upper"),  # the file name wins
        ("supplementary.stl", None, None),
    ],
)
def test_arch_from_name(filename: str, metadata: dict[str, str] | None, arch: str | None) -> None:
    assert arch_from_name(filename, metadata) == arch
