"""Reading, checking and deriving from 3D dental scans (STL, PLY, OBJ).

Units: mesh files carry no unit; every figure here assumes the file is in millimetres, which is
what intraoral and model scanners export. Stats say so in ``MeshStats.units``.

Binary and ASCII STL are parsed here rather than by trimesh: the binary header's triangle count
is the only way to tell a cut upload from a complete one, and trimesh guesses ASCII for binary
files whose header starts with "solid". PLY and OBJ go through trimesh, with the checks it does
not make done around it. Every failure leaves as an ``OrthovaultError`` with a stable code:
``mesh_empty``, ``mesh_truncated``, ``mesh_invalid``, ``mesh_too_large``,
``mesh_unsupported_format``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath
from typing import Any, Literal

import numpy as np
import trimesh
from PIL import Image

from domain.errors import OrthovaultError, TooLarge, Unprocessable, UnsupportedMedia

EMPTY = "mesh_empty"
TRUNCATED = "mesh_truncated"
INVALID = "mesh_invalid"
TOO_LARGE = "mesh_too_large"
UNSUPPORTED_FORMAT = "mesh_unsupported_format"

# A full-arch intraoral scan is 100k-1M triangles; ten times that is a mistake or an attack,
# and numpy would need gigabytes for it.
DEFAULT_MAX_FACES = 10_000_000


class MeshFormat(StrEnum):
    STL_BINARY = "stl_binary"
    STL_ASCII = "stl_ascii"
    PLY = "ply"
    OBJ = "obj"


# How a stored original is labelled; PLY has no registered media type.
MEDIA_TYPES: dict[MeshFormat, str] = {
    MeshFormat.STL_BINARY: "model/stl",
    MeshFormat.STL_ASCII: "model/stl",
    MeshFormat.PLY: "model/x-ply",
    MeshFormat.OBJ: "model/obj",
}
MESH_MEDIA_TYPES = frozenset(MEDIA_TYPES.values())


@dataclass(frozen=True, slots=True)
class MeshStats:
    triangles: int  # as stored in the file, polygons counted after triangulation
    vertices: int  # distinct positions once coincident corners are merged
    bbox_min_mm: tuple[float, float, float]
    bbox_max_mm: tuple[float, float, float]
    size_mm: tuple[float, float, float]
    surface_area_mm2: float
    volume_mm3: float | None  # only for a closed, consistently wound surface
    watertight: bool
    body_count: int
    degenerate_faces: int  # zero-area or repeated-corner triangles, dropped
    non_finite_vertices: int  # NaN/inf positions; triangles using them are dropped
    units: Literal["mm"] = "mm"  # assumed, never read from the file


@dataclass(frozen=True, slots=True, eq=False)
class MeshInfo:
    format: MeshFormat
    name: str | None  # STL solid name or header text, OBJ object name: hints for arch_from_name
    stats: MeshStats
    mesh: trimesh.Trimesh  # cleaned: finite, merged, no degenerate faces


# --- loading ----------------------------------------------------------------------------------


def load_mesh(data: bytes, filename: str, *, max_faces: int = DEFAULT_MAX_FACES) -> MeshInfo:
    """Parse, validate and measure one mesh file; the format is sniffed from the bytes."""
    fmt = _sniff(data, filename)
    try:
        if fmt is MeshFormat.STL_BINARY:
            vertices, faces, name = _read_binary_stl(data, max_faces)
        elif fmt is MeshFormat.STL_ASCII:
            vertices, faces, name = _read_ascii_stl(data, max_faces)
        elif fmt is MeshFormat.PLY:
            vertices, faces, name = _read_ply(data, max_faces)
        else:
            vertices, faces, name = _read_obj(data, max_faces)
        mesh, stats = _clean_and_measure(vertices, faces, max_faces)
    except OrthovaultError:
        raise
    except MemoryError as exc:
        raise TooLarge(TOO_LARGE, "The mesh is too large to load.") from exc
    except Exception as exc:
        raise Unprocessable(INVALID, f"The {fmt.value} file cannot be read.") from exc
    return MeshInfo(format=fmt, name=name, stats=stats, mesh=mesh)


def _sniff(data: bytes, filename: str) -> MeshFormat:
    suffix = PurePath(filename).suffix.lower()
    if data[:3] == b"ply" and data[3:4] in (b"\n", b"\r"):
        return MeshFormat.PLY
    if _binary_stl_size_matches(data):
        return MeshFormat.STL_BINARY
    if _looks_like_ascii_stl(data):
        return MeshFormat.STL_ASCII
    if suffix == ".stl":
        # Neither valid binary nor ASCII: read as binary so the size check names the problem.
        return MeshFormat.STL_BINARY
    if suffix == ".obj" or re.search(rb"(?m)^v[ \t]+\S+[ \t]+\S+[ \t]+\S+", data[:65536]):
        return MeshFormat.OBJ
    if not data.strip():
        raise Unprocessable(EMPTY, "The mesh file is empty.")
    raise UnsupportedMedia(UNSUPPORTED_FORMAT, "Only STL, PLY and OBJ meshes are accepted.")


_STL_HEADER = 84
_STL_RECORD = np.dtype(
    [("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")]
)  # 50 bytes per triangle


def _binary_stl_size_matches(data: bytes) -> bool:
    if len(data) < _STL_HEADER:
        return False
    count = int.from_bytes(data[80:84], "little")
    return len(data) == _STL_HEADER + count * _STL_RECORD.itemsize


def _looks_like_ascii_stl(data: bytes) -> bool:
    head = data[:4096]
    # Many binary exporters also begin their header with "solid"; text never holds NUL bytes.
    return (
        head.lstrip()[:5].lower() == b"solid"
        and b"\x00" not in head[:512]
        and (b"facet" in head.lower() or b"endsolid" in head.lower())
    )


def _read_binary_stl(data: bytes, max_faces: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    if len(data) < _STL_HEADER:
        raise Unprocessable(TRUNCATED, "The binary STL ends inside its 84-byte header.")
    count = int.from_bytes(data[80:84], "little")
    expected = _STL_HEADER + count * _STL_RECORD.itemsize
    if len(data) < expected:
        raise Unprocessable(
            TRUNCATED,
            f"The STL header announces {count} triangles but the file holds "
            f"{(len(data) - _STL_HEADER) // _STL_RECORD.itemsize}.",
        )
    if len(data) - expected >= _STL_RECORD.itemsize:
        # Trailing bytes short of a record are padding; whole records mean a lying header.
        raise Unprocessable(INVALID, "The STL header's triangle count does not match the file.")
    if count == 0:
        raise Unprocessable(EMPTY, "The STL file holds no triangles.")
    _check_count(count, max_faces)
    records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=_STL_HEADER)
    corners = records["corners"].astype(np.float64).reshape(-1, 3)
    faces = np.arange(len(corners), dtype=np.int64).reshape(-1, 3)
    return corners, faces, _header_name(data[:80])


def _header_name(header: bytes) -> str | None:
    text = header.split(b"\x00", 1)[0].decode("ascii", errors="ignore")
    text = re.sub(r"^\s*solid\b", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", "".join(ch for ch in text if ch.isprintable())).strip()
    return text or None


_ASCII_VERTEX = re.compile(rb"vertex[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)", re.IGNORECASE)


def _read_ascii_stl(data: bytes, max_faces: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    lowered = data.lower()
    if b"endsolid" not in lowered.rstrip()[-1024:]:
        raise Unprocessable(TRUNCATED, "The ASCII STL stops before its 'endsolid' line.")
    facets = lowered.count(b"endfacet")
    _check_count(facets, max_faces)
    corners = _ASCII_VERTEX.findall(data)
    if facets == 0 and not corners:
        raise Unprocessable(EMPTY, "The STL file holds no triangles.")
    if len(corners) != 3 * facets:
        raise Unprocessable(INVALID, "An ASCII STL facet does not have exactly three vertices.")
    vertices = np.array(corners, dtype=np.bytes_).astype(np.float64)
    faces = np.arange(len(vertices), dtype=np.int64).reshape(-1, 3)
    first_line = data.lstrip().split(b"\n", 1)[0]
    return vertices, faces, _header_name(first_line[:200])


_PLY_TYPE_SIZES = {
    "char": 1, "uchar": 1, "int8": 1, "uint8": 1,
    "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
    "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4,
    "double": 8, "float64": 8,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _PlyElement:
    name: str
    count: int
    min_record_bytes: int = 0  # binary: fixed properties plus the smallest possible lists
    is_list: tuple[bool, ...] = ()  # per property, in order


def _ply_header(data: bytes) -> tuple[str, list[_PlyElement], int]:
    """Return (format, elements, offset of the body)."""
    match = re.search(rb"end_header[ \t]*\r?\n", data[:65536])
    if match is None:
        raise Unprocessable(TRUNCATED, "The PLY header has no end_header line.")
    fmt = ""
    elements: list[_PlyElement] = []
    for raw in data[: match.start()].decode("ascii", errors="replace").splitlines():
        words = raw.split()
        if not words:
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            elements.append(_PlyElement(words[1], int(words[2])))
        elif words[0] == "property" and elements:
            last = elements[-1]
            is_list = len(words) >= 5 and words[1] == "list"
            if is_list:
                # A face has at least three indices; other lists may be empty.
                least = 3 if last.name == "face" else 0
                size = _PLY_TYPE_SIZES.get(words[2], 1) + least * _PLY_TYPE_SIZES.get(words[3], 1)
            else:
                size = _PLY_TYPE_SIZES.get(words[1], 1)
            elements[-1] = _PlyElement(
                last.name, last.count, last.min_record_bytes + size, (*last.is_list, is_list)
            )
    return fmt, elements, match.end()


def _ascii_record_complete(line: bytes, element: _PlyElement) -> bool:
    """Whether the last body line holds every value its element declares.

    Extra values are let through: some writers (VCGLIB) append more than their header says.
    """
    tokens = line.split()
    position = 0
    for is_list in element.is_list:
        if position >= len(tokens):
            return False
        if is_list:
            if not tokens[position].isdigit():
                return False
            position += 1 + int(tokens[position])
        else:
            position += 1
    return position <= len(tokens)


def _read_ply(data: bytes, max_faces: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    fmt, elements, body_at = _ply_header(data)
    declared = {element.name: element.count for element in elements}
    _check_count(declared.get("face", 0), max_faces)
    if declared.get("vertex", 0) == 0 or declared.get("face", 0) == 0:
        raise Unprocessable(EMPTY, "The PLY file declares no triangles.")
    body = data[body_at:]
    if fmt == "ascii":
        lines = [line for line in body.splitlines() if line.strip()]
        complete = len(lines) >= sum(declared.values()) and (
            not elements or not lines or _ascii_record_complete(lines[-1], elements[-1])
        )
    else:
        complete = len(body) >= sum(e.count * e.min_record_bytes for e in elements)
    if not complete:
        raise Unprocessable(TRUNCATED, "The PLY body is shorter than its header declares.")
    mesh = _trimesh_load(data, "ply")
    # trimesh splits vertices along texture seams and polygons into triangles, so only fewer
    # than declared means a cut body.
    if len(mesh.vertices) < declared["vertex"] or len(mesh.faces) < declared["face"]:
        raise Unprocessable(TRUNCATED, "The PLY file holds less than it declares.")
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), None


_OBJ_FACE = re.compile(rb"(?m)^f[ \t]")
# OBJ indices start at 1 (negatives count back from the end); 0 points at nothing.
_OBJ_ZERO_INDEX = re.compile(rb"(?m)^f[ \t][^\n]*?(?<=[ \t])0(?=[/ \t\r\n]|$)")
_OBJ_NAME = re.compile(rb"(?m)^[og][ \t]+([^\r\n]+)")


def _read_obj(data: bytes, max_faces: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    faces_declared = len(_OBJ_FACE.findall(data))
    if faces_declared == 0:
        raise Unprocessable(EMPTY, "The OBJ file holds no faces.")
    _check_count(faces_declared, max_faces)
    if _OBJ_ZERO_INDEX.search(data):
        raise Unprocessable(INVALID, "An OBJ face uses vertex index 0 (indices start at 1).")
    try:
        mesh = _trimesh_load(data, "obj")
    except IndexError as exc:
        raise Unprocessable(INVALID, "An OBJ face references a missing vertex.") from exc
    name_match = _OBJ_NAME.search(data)
    name = name_match[1].decode("utf-8", errors="ignore").strip() if name_match else None
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), name or None


def _trimesh_load(data: bytes, file_type: str) -> trimesh.Trimesh:
    loaded = trimesh.load_mesh(
        io.BytesIO(data), file_type=file_type, process=False, skip_materials=True
    )
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_mesh() if loaded.geometry else None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise Unprocessable(EMPTY, f"The {file_type.upper()} file holds no triangles.")
    return loaded


def _check_count(faces: int, max_faces: int) -> None:
    if faces > max_faces:
        raise TooLarge(TOO_LARGE, f"The mesh has {faces} triangles; the limit is {max_faces}.")


# --- validation and statistics ----------------------------------------------------------------


def _clean_and_measure(
    vertices: np.ndarray, faces: np.ndarray, max_faces: int
) -> tuple[trimesh.Trimesh, MeshStats]:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise Unprocessable(INVALID, "The mesh is not made of 3D triangles.")
    if len(faces) == 0 or len(vertices) == 0:
        raise Unprocessable(EMPTY, "The mesh holds no triangles.")
    _check_count(len(faces), max_faces)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise Unprocessable(INVALID, "A face references a vertex that does not exist.")
    triangles = len(faces)
    finite = np.isfinite(vertices).all(axis=1)
    non_finite = int((~finite).sum())
    faces = faces[finite[faces].all(axis=1)]
    if len(faces) == 0:
        raise Unprocessable(INVALID, "No triangle of the mesh has finite coordinates.")

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    mesh.remove_unreferenced_vertices()  # drops the NaN corners before merging
    # STL stores every corner of every triangle; sharing them is what makes edges meet.
    mesh.merge_vertices()
    keep = mesh.nondegenerate_faces()
    degenerate = int((~keep).sum())
    if not keep.any():
        raise Unprocessable(INVALID, "Every triangle of the mesh has zero area.")
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()

    watertight = bool(mesh.is_watertight)
    volume = abs(float(mesh.volume)) if watertight and mesh.is_winding_consistent else None
    low, high = mesh.bounds
    stats = MeshStats(
        triangles=triangles,
        vertices=len(mesh.vertices),
        bbox_min_mm=_triple(low),
        bbox_max_mm=_triple(high),
        size_mm=_triple(high - low),
        surface_area_mm2=float(mesh.area),
        volume_mm3=volume,
        watertight=watertight,
        body_count=_body_count(np.asarray(mesh.faces), len(mesh.vertices)),
        degenerate_faces=degenerate,
        non_finite_vertices=non_finite,
    )
    return mesh, stats


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def _body_count(faces: np.ndarray, vertex_count: int) -> int:
    """Connected pieces sharing vertices, by min-label propagation with pointer jumping.

    trimesh's own ``body_count`` needs scipy or networkx; this needs numpy only.
    """
    labels = np.arange(vertex_count)
    flat = faces.ravel()
    while True:
        face_min = labels[faces].min(axis=1)
        updated = labels.copy()
        np.minimum.at(updated, flat, np.repeat(face_min, 3))
        while not np.array_equal(updated, updated[updated]):
            updated = updated[updated]
        if np.array_equal(updated, labels):
            return len(np.unique(labels[flat]))
        labels = updated


# --- derivatives ------------------------------------------------------------------------------


def _as_trimesh(mesh: MeshInfo | trimesh.Trimesh) -> trimesh.Trimesh:
    return mesh.mesh if isinstance(mesh, MeshInfo) else mesh


def to_glb(mesh: MeshInfo | trimesh.Trimesh, *, include_normals: bool = True) -> bytes:
    """A binary glTF for web viewers, scaled from millimetres to glTF's metres.

    The mesh is the cleaned one (shared vertices, no degenerate faces), which is what keeps the
    file compact: a raw STL repeats every vertex six times over.
    """
    source = _as_trimesh(mesh)
    vertices = np.asarray(source.vertices, dtype=np.float64)
    faces = np.asarray(source.faces)
    web = trimesh.Trimesh(
        vertices=vertices * 0.001,
        faces=faces,
        # Given here because trimesh's own computation wants scipy and logs a traceback.
        vertex_normals=_vertex_normals(vertices, faces) if include_normals else None,
        process=False,
    )
    return web.export(file_type="glb", include_normals=include_normals)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals: the sum of the unnormalised normals of adjacent faces."""
    corners = vertices[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    summed = np.zeros_like(vertices)
    np.add.at(summed, faces.ravel(), np.repeat(face_normals, 3, axis=0))
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    return np.divide(summed, length, out=np.zeros_like(summed), where=length > 0)


_BASE_COLOUR = np.array([224.0, 218.0, 204.0])  # stone-model beige
_LIGHT = np.array([-0.35, 0.45, 1.0]) / np.linalg.norm([-0.35, 0.45, 1.0])
_SUPERSAMPLE = 2
_FRAGMENT_BUDGET = 1 << 20  # candidate pixels evaluated per vectorised batch


def render_thumbnail(
    mesh: MeshInfo | trimesh.Trimesh,
    size: int = 256,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """A flat-shaded RGB view of the mesh, drawn with numpy alone (no OpenGL or display).

    The camera looks along the mesh's thinnest principal axis, from the side most surface faces,
    then tilts for depth: an arch scan is seen from its occlusal side at an angle.
    """
    source = _as_trimesh(mesh)
    if len(source.faces) == 0:
        raise Unprocessable(EMPTY, "An empty mesh has no thumbnail.")
    canvas = size * _SUPERSAMPLE
    rotation = _view_rotation(source)
    points = (np.asarray(source.vertices) - source.bounds.mean(axis=0)) @ rotation.T
    span = float(np.ptp(points[:, :2], axis=0).max()) or 1.0
    scale = canvas * 0.9 / span
    centre = (points[:, :2].max(axis=0) + points[:, :2].min(axis=0)) / 2
    xy = np.empty((len(points), 2))
    xy[:, 0] = (points[:, 0] - centre[0]) * scale + canvas / 2
    xy[:, 1] = canvas / 2 - (points[:, 1] - centre[1]) * scale  # image rows grow downwards
    face_ids = _rasterise(xy, points[:, 2], np.asarray(source.faces), canvas)

    normals = np.asarray(source.face_normals) @ rotation.T
    # Two-sided lighting: scans are open shells, their inner side is as visible as the outer.
    shade = 0.3 + 0.7 * np.abs(normals @ _LIGHT)
    colours = np.clip(shade[:, None] * _BASE_COLOUR[None, :], 0, 255).astype(np.uint8)
    image = np.empty((canvas, canvas, 3), dtype=np.uint8)
    image[:] = np.array(background, dtype=np.uint8)
    covered = face_ids >= 0
    image[covered] = colours[face_ids[covered]]
    return Image.fromarray(image, "RGB").resize((size, size), Image.Resampling.LANCZOS)


def _view_rotation(mesh: trimesh.Trimesh) -> np.ndarray:
    """Rows: screen x, screen y, towards the viewer."""
    weights = np.asarray(mesh.area_faces)
    centres = np.asarray(mesh.triangles_center)
    if weights.sum() <= 0:
        weights = np.ones(len(centres))
    mean = np.average(centres, axis=0, weights=weights)
    offsets = centres - mean
    covariance = (offsets * weights[:, None]).T @ offsets
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    x_axis, y_axis = vectors[:, 2], vectors[:, 1]
    z_axis = np.cross(x_axis, y_axis)
    facing = (np.asarray(mesh.face_normals) * weights[:, None]).sum(axis=0)
    if facing @ z_axis < 0:  # look at the side most of the surface faces
        y_axis, z_axis = -y_axis, -z_axis
    base = np.stack([x_axis, y_axis, z_axis])
    return _tilt(np.radians(-35.0), np.radians(20.0)) @ base


def _tilt(about_x: float, about_y: float) -> np.ndarray:
    cx, sx, cy, sy = np.cos(about_x), np.sin(about_x), np.cos(about_y), np.sin(about_y)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return ry @ rx


def _rasterise(xy: np.ndarray, depth: np.ndarray, faces: np.ndarray, canvas: int) -> np.ndarray:
    """Index of the nearest face at each pixel centre (-1 where none), fully vectorised.

    Triangles are grouped by their pixel bounding box, rounded up to powers of two, so that a
    batch tests one fixed grid of candidate pixels per triangle; dense scans are mostly
    one-pixel triangles, and long slivers do not pay for a square box.
    """
    corners = xy[faces]  # (faces, 3, 2)
    low = np.floor(corners.min(axis=1)).astype(np.int64)
    high = np.ceil(corners.max(axis=1)).astype(np.int64)
    box = 2 ** np.ceil(np.log2(np.clip(high - low + 1, 1, 2 * canvas))).astype(np.int64)
    nearest = np.full(canvas * canvas, -np.inf)
    owner = np.full(canvas * canvas, -1, dtype=np.int64)
    shapes, groups = np.unique(box, axis=0, return_inverse=True)
    groups = groups.ravel()
    for group, (width, height) in enumerate(shapes):
        chosen = np.nonzero(groups == group)[0]
        batch = max(1, _FRAGMENT_BUDGET // int(width * height))
        for start in range(0, len(chosen), batch):
            ids = chosen[start : start + batch]
            _draw_batch(
                ids, (int(width), int(height)), low, corners, depth[faces], canvas, nearest, owner
            )
    return owner.reshape(canvas, canvas)


def _draw_batch(
    ids: np.ndarray,
    box: tuple[int, int],
    low: np.ndarray,
    corners: np.ndarray,
    depths: np.ndarray,
    canvas: int,
    nearest: np.ndarray,
    owner: np.ndarray,
) -> None:
    width, height = box
    grid_y, grid_x = np.divmod(np.arange(width * height), width)
    px = low[ids, 0:1] + grid_x[None, :]
    py = low[ids, 1:2] + grid_y[None, :]
    cx, cy = px + 0.5, py + 0.5  # sample at pixel centres
    (x0, y0), (x1, y1), (x2, y2) = (corners[ids, k, :].T[:, :, None] for k in range(3))
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    usable = np.abs(area) > 1e-12  # edge-on triangles cover nothing
    area = np.where(usable, area, 1.0)
    w0 = ((x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)) / area
    w1 = ((x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)) / area
    w2 = 1.0 - w0 - w1
    inside = (
        usable
        & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        & (px >= 0) & (py >= 0) & (px < canvas) & (py < canvas)
    )  # fmt: skip
    if not inside.any():
        return
    z = depths[ids]
    fragment_depth = (w0 * z[:, 0:1] + w1 * z[:, 1:2] + w2 * z[:, 2:3])[inside]
    pixel = (py * canvas + px)[inside]
    face = np.broadcast_to(ids[:, None], inside.shape)[inside]
    # Keep the fragment closest to the viewer per pixel, then merge with what is drawn.
    order = np.lexsort((-fragment_depth, pixel))
    pixel, fragment_depth, face = pixel[order], fragment_depth[order], face[order]
    first = np.ones(len(pixel), dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    pixel, fragment_depth, face = pixel[first], fragment_depth[first], face[first]
    closer = fragment_depth > nearest[pixel]
    nearest[pixel[closer]] = fragment_depth[closer]
    owner[pixel[closer]] = face[closer]


# --- arch ---------------------------------------------------------------------------------------

Arch = Literal["upper", "lower"]

_UPPER_WORDS = frozenset(
    {"upper", "maxilla", "maxillary", "maxillar", "maxilar", "oberkiefer", "superior"}
)
_LOWER_WORDS = frozenset(
    {"lower", "mandible", "mandibular", "mandibula", "unterkiefer", "inferior"}
)
# Compound forms split by camel case ("UpperJaw" -> upper, jaw) are covered by the words above;
# short trailing markers ("..._u.stl", "..._l.stl") used by some scanner exports are read only
# in last position, where they cannot be an initial or a tooth number.
_SHORT_MARKERS: dict[str, Arch] = {"u": "upper", "l": "lower"}
_ARCH_KEYS = ("arch", "jaw", "jaw_type", "scan_type", "type", "name", "description")


def arch_from_name(filename: str, metadata: Mapping[str, Any] | None = None) -> Arch | None:
    """Which dental arch a scan is, from its file name, else from metadata values.

    None when nothing says so, or when one source names both arches (a bite scan, say).
    """
    found = _arch_from_text(PurePath(filename).stem)
    if found is not None:
        return found
    for key in _ARCH_KEYS:
        value = (metadata or {}).get(key)
        if isinstance(value, str) and (found := _arch_from_text(value)) is not None:
            return found
    return None


def _words(text: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text)  # UpperJaw -> Upper Jaw
    return [word for word in re.split(r"[^A-Za-z]+", spaced.lower()) if word]


def _arch_from_text(text: str) -> Arch | None:
    words = _words(text)
    upper = any(word in _UPPER_WORDS for word in words)
    lower = any(word in _LOWER_WORDS for word in words)
    if upper != lower:
        return "upper" if upper else "lower"
    if upper or len(words) < 2:
        return None
    return _SHORT_MARKERS.get(words[-1])
