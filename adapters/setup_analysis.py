"""Digital set-ups and aligner stages: movement between stages, rigid registration, distance maps.

A set-up is a series of meshes exported by the planning software, one per stage and arch, all in
that software's common frame and in millimetres (see ``adapters/mesh_codec.py`` for loading).
Three tools work on it:

- :func:`analyse_setup`: per-stage statistics and the stage-to-stage movement. When two stages
  share their topology (the planning software moved the same vertices, the usual export) the
  movement is exact per vertex; otherwise it falls back to the distance to the other surface.
- :func:`icp`: rigid point-to-point ICP (Kabsch, det = +1, no scaling), for scans that do not
  share a frame (a progress scan against the planned stage).
- :func:`distance_map`: per-vertex distance to the nearest point of another surface, with the
  summary clinicians read (mean, 95th percentile, maximum, share within 0.25 and 0.5 mm).

Nearest neighbours come from a uniform grid built with numpy alone: trimesh's own proximity
queries need rtree, and its ICP scipy, neither of which the service installs. A grid fits
scans well: their points lie on a surface, so a cell a little wider than the point spacing
holds a handful of points, and a query looks at its 27 neighbouring cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import trimesh
import trimesh.triangles
from PIL import Image, ImageDraw

from adapters.mesh_codec import MeshInfo
from domain.errors import InvalidInput

Arch = Literal["upper", "lower"]
MeshLike = trimesh.Trimesh | MeshInfo

STAGES_MISMATCH = "setup_stages_mismatch"

# --- nearest neighbours -----------------------------------------------------------------------

# Candidate pairs evaluated per vectorised batch: about 100 MB of temporaries.
_CANDIDATE_BUDGET = 1 << 21
_NEIGHBOURS = np.stack(
    np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), axis=-1
).reshape(-1, 3)
# Mean points per occupied cell the base grid aims at: fewer means more empty neighbour cells
# to look up, more means more distances per query.
_TARGET_OCCUPANCY = 3.0
# Below this many query-point pairs a full comparison (one matrix product) beats the grid.
_BRUTE_FORCE_PAIRS = 20_000_000


class _Grid:
    """Points bucketed in cubic cells of side ``cell``, stored sorted by cell.

    Cells are looked up in a dense table when the grid is small enough (one array read per
    neighbour), else by binary search in the sorted keys of the occupied cells.
    """

    _DENSE_LIMIT = 1 << 24  # cells: two int32 tables of this size take 128 MB

    def __init__(self, points: np.ndarray, cell: float) -> None:
        self.cell = cell
        self.origin = points.min(axis=0)
        ijk = np.floor((points - self.origin) / cell).astype(np.int64)
        # One empty layer on every side: neighbours of clipped query cells stay in range.
        self.dims = ijk.max(axis=0) + 3
        keys = self._key(ijk + 1)
        self.order = np.argsort(keys, kind="stable")
        self.sorted_points32 = points[self.order].astype(np.float32)
        occupied, starts, counts = np.unique(
            keys[self.order], return_index=True, return_counts=True
        )
        self.occupancy = float(counts.mean())
        cells = int(np.prod(self.dims))
        self.dense = cells <= self._DENSE_LIMIT
        if self.dense:
            self.starts = np.zeros(cells, dtype=np.int32)
            self.counts = np.zeros(cells, dtype=np.int32)
            self.starts[occupied] = starts
            self.counts[occupied] = counts
        else:
            self.keys, self.starts, self.counts = occupied, starts, counts

    def _key(self, ijk: np.ndarray) -> np.ndarray:
        return (ijk[..., 0] * self.dims[1] + ijk[..., 1]) * self.dims[2] + ijk[..., 2]

    def ranges(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start (into the sorted points) and length of each neighbour cell: (queries, 27).

        A query more than a cell outside the points is clipped to the border layer; that is
        safe because every point is then farther than one cell, so the caller's exactness
        test sends it to a coarser grid anyway.
        """
        ijk = np.floor((queries - self.origin) / self.cell).astype(np.int64) + 1
        ijk = np.clip(ijk, 1, self.dims - 2)
        # The key is linear in the cell coordinates, so a neighbour's key is a fixed offset.
        keys = self._key(ijk)[:, None] + self._key(_NEIGHBOURS)[None, :]
        if self.dense:
            return self.starts[keys], self.counts[keys]
        pos = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        found = self.keys[pos] == keys
        return np.where(found, self.starts[pos], 0), np.where(found, self.counts[pos], 0)


class NearestIndex:
    """Exact nearest-neighbour queries on a fixed point set, numpy only.

    A query is answered on the finest grid where its nearest point lies within one cell (all
    points that close are in the 27 neighbour cells, so the answer is exact); the rest move
    to a grid with cells twice as wide. Once a cell spans every point the search is a full
    scan, so the loop ends.
    """

    def __init__(self, points: np.ndarray) -> None:
        self.points = np.ascontiguousarray(points, dtype=np.float64)
        if self.points.ndim != 2 or self.points.shape[1] != 3 or len(self.points) == 0:
            raise ValueError("points must be a non-empty (n, 3) array")
        self._low, self._high = self.points.min(axis=0), self.points.max(axis=0)
        self._extent = float((self._high - self._low).max())
        self._levels: list[_Grid] = [self._base_grid()]

    def _base_grid(self) -> _Grid:
        n = len(self.points)
        # Points on a surface: spacing ~ extent / sqrt(n); then correct the guess by the
        # occupancy it gives (twice at most; cell area scales occupancy on a surface).
        cell = max(self._extent / math.sqrt(n), 1e-9) * 1.5
        grid = _Grid(self.points, cell)
        for _ in range(2):
            occupancy = grid.occupancy
            if 0.5 * _TARGET_OCCUPANCY <= occupancy <= 2.0 * _TARGET_OCCUPANCY:
                break
            cell *= math.sqrt(_TARGET_OCCUPANCY / occupancy)
            grid = _Grid(self.points, cell)
        return grid

    def _level(self, index: int) -> _Grid:
        while len(self._levels) <= index:
            self._levels.append(_Grid(self.points, self._levels[-1].cell * 2.0))
        return self._levels[index]

    def query(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to, and index of, the nearest point for every row of ``queries``."""
        queries = np.ascontiguousarray(queries, dtype=np.float64)
        best_d2 = np.full(len(queries), np.inf)
        best_index = np.zeros(len(queries), dtype=np.int64)
        pending = np.arange(len(queries))
        level = 0
        while len(pending):
            if len(pending) * len(self.points) <= _BRUTE_FORCE_PAIRS:
                # Few queries left (far ones, or a small set): comparing with every point
                # is cheaper than coarser and coarser grids.
                best_d2[pending], best_index[pending] = self._brute_force(queries[pending])
                break
            grid = self._level(level)
            d2, index = self._query_grid(grid, queries[pending])
            better = d2 < best_d2[pending]
            best_d2[pending[better]] = d2[better]
            best_index[pending[better]] = index[better]
            if grid.cell >= self._span(queries[pending]):
                break  # every point was a candidate: the answers are exact
            pending = pending[best_d2[pending] > grid.cell**2]
            level += 1
        return np.sqrt(best_d2), best_index

    def _brute_force(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.empty(len(queries), dtype=np.int64)
        squared = np.einsum("ij,ij->i", self.points, self.points)
        rows = max(1, (1 << 22) // len(self.points))
        for start in range(0, len(queries), rows):
            chunk = queries[start : start + rows]
            # |p|^2 - 2 q.p ranks the points like |q - p|^2 does (|q|^2 is common to the row).
            index[start : start + rows] = np.argmin(
                squared[None, :] - 2.0 * chunk @ self.points.T, axis=1
            )
        diff = self.points[index] - queries
        return np.einsum("ij,ij->i", diff, diff), index

    def _span(self, queries: np.ndarray) -> float:
        low = np.minimum(queries.min(axis=0), self._low)
        high = np.maximum(queries.max(axis=0), self._high)
        return float((high - low).max())

    def _query_grid(self, grid: _Grid, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d2 = np.full(len(queries), np.inf)
        index = np.zeros(len(queries), dtype=np.int64)
        # Ranges of a few thousand queries at a time keep the (queries, 27) tables small.
        for start in range(0, len(queries), 16384):
            chunk = slice(start, start + 16384)
            starts, counts = grid.ranges(queries[chunk])
            totals = counts.sum(axis=1)
            ends = np.cumsum(totals)
            first = 0
            while first < len(totals):
                # As many queries as fit the candidate budget, at least one.
                base = ends[first - 1] if first else 0
                last = max(first + 1, int(np.searchsorted(ends, base + _CANDIDATE_BUDGET)))
                rows = slice(first, last)
                sub_d2, sub_index = self._candidates(
                    grid, queries[chunk][rows], starts[rows], counts[rows]
                )
                d2[start + first : start + last] = sub_d2
                index[start + first : start + last] = sub_index
                first = last
        return d2, index

    def _candidates(
        self, grid: _Grid, queries: np.ndarray, starts: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        d2 = np.full(len(queries), np.inf)
        index = np.zeros(len(queries), dtype=np.int64)
        flat_counts = counts.ravel()
        total = int(flat_counts.sum())
        if total == 0:
            return d2, index
        # Expand every (query, cell) range into candidate positions, query-major: position =
        # cell start + rank within the expansion - ranks used by the earlier ranges.
        shift = starts.ravel() - (np.cumsum(flat_counts) - flat_counts)
        positions = np.repeat(shift, flat_counts) + np.arange(total)
        per_query = counts.sum(axis=1)
        owner = np.repeat(np.arange(len(queries)), per_query)
        # float32 selects the winner at half the memory traffic; its distance is then
        # recomputed in float64 (a near-tie may pick a point 1e-6 mm farther, no more).
        diff = grid.sorted_points32[positions] - queries.astype(np.float32)[owner]
        dist2 = np.einsum("ij,ij->i", diff, diff)
        has = per_query > 0
        seg_starts = (np.cumsum(per_query) - per_query)[has]
        minima = np.minimum.reduceat(dist2, seg_starts)
        hits = np.flatnonzero(dist2 == np.repeat(minima, per_query[has]))
        keep = np.ones(len(hits), dtype=bool)
        keep[1:] = owner[hits[1:]] != owner[hits[:-1]]
        hits = hits[keep]
        winners = owner[hits]
        index[winners] = grid.order[positions[hits]]
        exact = self.points[index[winners]] - queries[winners]
        d2[winners] = np.einsum("ij,ij->i", exact, exact)
        return d2, index


# --- rigid registration -----------------------------------------------------------------------


def kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (det +1) and translation t minimising sum |R s + t - t'|^2 over pairs."""
    source_centroid, target_centroid = source.mean(axis=0), target.mean(axis=0)
    covariance = (source - source_centroid).T @ (target - target_centroid)
    u, _, vt = np.linalg.svd(covariance)
    # Flipping the weakest direction when det < 0 gives the best proper rotation, not a mirror.
    d = 1.0 if np.linalg.det(vt.T @ u.T) >= 0 else -1.0
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rotation, target_centroid - rotation @ source_centroid


@dataclass(frozen=True, slots=True, eq=False)
class IcpResult:
    """``p -> rotation @ p + translation`` takes the source onto the target (mm)."""

    rotation: np.ndarray  # (3, 3), det +1
    translation: np.ndarray  # (3,)
    rms_mm: float  # every source point to its nearest target point, after alignment
    iterations: int
    converged: bool

    @property
    def matrix(self) -> np.ndarray:
        matrix = np.eye(4)
        matrix[:3, :3] = self.rotation
        matrix[:3, 3] = self.translation
        return matrix

    @property
    def rotation_deg(self) -> float:
        cosine = (np.trace(self.rotation) - 1.0) / 2.0
        return math.degrees(math.acos(float(np.clip(cosine, -1.0, 1.0))))

    def apply(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation


# Coarse stage: enough points to choose among initial poses, few enough for brute force.
_COARSE_SOURCE = 400
_COARSE_TARGET = 3_000
_COARSE_ITERATIONS = 10
# Pairs farther apart than this many median distances are left out of a fine step: they are
# where the surfaces do not overlap (a cut scan border), and would pull the fit.
_REJECT_MEDIANS = 3.0


def _vertices(geometry: MeshLike | np.ndarray) -> np.ndarray:
    if isinstance(geometry, MeshInfo):
        geometry = geometry.mesh
    points = np.asarray(geometry.vertices if isinstance(geometry, trimesh.Trimesh) else geometry)
    points = points.astype(np.float64, copy=False)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise InvalidInput("mesh_invalid", "registration needs at least three 3D points")
    if not np.isfinite(points).all():
        raise InvalidInput("mesh_invalid", "registration points must be finite")
    return points


def _subsample(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) <= count:
        return points
    return points[np.sort(rng.choice(len(points), count, replace=False))]


def _principal_axes(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return vectors if np.linalg.det(vectors) > 0 else vectors * np.array([1.0, 1.0, -1.0])


def _initial_poses(source: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
    """Centroid-only, then principal axes matched under the four proper sign choices.

    Axis signs are arbitrary, so all four rotations that keep det = +1 are tried; the
    centroid-only pose wins when the two scans are already roughly aligned.
    """
    poses = [np.eye(3)]
    source_axes, target_axes = _principal_axes(source), _principal_axes(target)
    for signs in ((1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1)):
        poses.append(target_axes @ np.diag(signs) @ source_axes.T)
    return poses


def _run_icp(
    source: np.ndarray,
    index: NearestIndex,
    rotation: np.ndarray,
    translation: np.ndarray,
    *,
    iterations: int,
    tolerance: float,
    reject: bool,
) -> tuple[np.ndarray, np.ndarray, float, int, bool]:
    extent = max(float(np.ptp(source, axis=0).max()), 1e-9)
    rms = math.inf
    for step in range(1, iterations + 1):
        moved = source @ rotation.T + translation
        distances, nearest = index.query(moved)
        keep = np.ones(len(moved), dtype=bool)
        if reject:
            keep = distances <= max(_REJECT_MEDIANS * float(np.median(distances)), tolerance)
            if keep.sum() < 3:
                keep[:] = True
        rms = float(np.sqrt(np.mean(distances[keep] ** 2)))
        delta_rotation, delta_translation = kabsch(moved[keep], index.points[nearest[keep]])
        rotation = delta_rotation @ rotation
        translation = delta_rotation @ translation + delta_translation
        # Converged when the update moves no point of the source by more than the tolerance.
        angle = math.acos(float(np.clip((np.trace(delta_rotation) - 1.0) / 2.0, -1.0, 1.0)))
        if angle * extent + float(np.linalg.norm(delta_translation)) < tolerance:
            return rotation, translation, rms, step, True
    return rotation, translation, rms, iterations, False


def icp(
    source: MeshLike | np.ndarray,
    target: MeshLike | np.ndarray,
    *,
    initial: np.ndarray | None = None,
    max_iterations: int = 100,
    tolerance_mm: float = 1e-5,
    sample: int = 20_000,
    seed: int = 0,
) -> IcpResult:
    """Rigid point-to-point ICP of ``source`` onto ``target`` vertices; no scaling, no mirror.

    Without ``initial`` (a 4x4 matrix) it starts from the centroids and the principal axes,
    picking the best of five poses after a short coarse run. The fine iterations use at most
    ``sample`` source points (fixed ``seed``); the reported RMS is over all of them.
    """
    source_points, target_points = _vertices(source), _vertices(target)
    rng = np.random.default_rng(seed)
    if initial is not None:
        start = np.asarray(initial, dtype=np.float64)
        if start.shape != (4, 4) or not np.isfinite(start).all():
            raise InvalidInput("invalid_transform", "initial must be a finite 4x4 matrix")
        rotation, translation, coarse_steps = start[:3, :3], start[:3, 3], 0
    else:
        rotation, translation, coarse_steps = _coarse_pose(source_points, target_points, rng)
    index = NearestIndex(target_points)
    rotation, translation, _, fine_steps, converged = _run_icp(
        _subsample(source_points, sample, rng),
        index,
        rotation,
        translation,
        iterations=max_iterations,
        tolerance=tolerance_mm,
        reject=True,
    )
    distances, _ = index.query(source_points @ rotation.T + translation)
    return IcpResult(
        rotation=rotation,
        translation=translation,
        rms_mm=float(np.sqrt(np.mean(distances**2))),
        iterations=coarse_steps + fine_steps,
        converged=converged,
    )


def _coarse_pose(
    source: np.ndarray, target: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    coarse_source = _subsample(source, _COARSE_SOURCE, rng)
    coarse_index = NearestIndex(_subsample(target, _COARSE_TARGET, rng))
    source_centroid, target_centroid = source.mean(axis=0), target.mean(axis=0)
    best: tuple[float, np.ndarray, np.ndarray, int] | None = None
    for pose in _initial_poses(source, target):
        rotation, translation, rms, steps, _ = _run_icp(
            coarse_source,
            coarse_index,
            pose,
            target_centroid - pose @ source_centroid,
            iterations=_COARSE_ITERATIONS,
            tolerance=1e-4,
            reject=False,
        )
        if best is None or rms < best[0]:
            best = (rms, rotation, translation, steps)
    assert best is not None
    return best[1], best[2], best[3]


# --- distance maps ----------------------------------------------------------------------------

WITHIN_THRESHOLDS_MM = (0.25, 0.5)


@dataclass(frozen=True, slots=True)
class DistanceSummary:
    count: int
    mean_mm: float
    p95_mm: float
    max_mm: float
    within_0_25_pct: float
    within_0_5_pct: float

    @classmethod
    def of(cls, distances: np.ndarray) -> DistanceSummary:
        d = np.abs(np.asarray(distances, dtype=np.float64))
        return cls(
            count=len(d),
            mean_mm=float(d.mean()),
            p95_mm=float(np.percentile(d, 95)),
            max_mm=float(d.max()),
            within_0_25_pct=100.0 * float((d <= WITHIN_THRESHOLDS_MM[0]).mean()),
            within_0_5_pct=100.0 * float((d <= WITHIN_THRESHOLDS_MM[1]).mean()),
        )


@dataclass(frozen=True, slots=True, eq=False)
class DistanceMap:
    distances_mm: np.ndarray  # per source vertex, unsigned
    closest: np.ndarray  # (n, 3) nearest point on the target
    summary: DistanceSummary


def _one_ring(faces: np.ndarray, vertex_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces around each vertex as CSR: face ids, start and count per vertex."""
    flat = faces.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=vertex_count)
    starts = np.cumsum(counts) - counts
    return order // 3, starts, counts


# Queries per batch of the surface search: each has about six ring triangles, and trimesh's
# closest-point routine keeps a dozen (n, 3) temporaries per triangle.
_SURFACE_BATCH = 32_768


def _closest_on_surface(
    mesh: trimesh.Trimesh, index: NearestIndex, queries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closest point on the faces around each query's nearest vertex.

    That is the true closest surface point unless the surface folds back closer than one edge
    length; it is never farther than the nearest vertex.
    """
    vertex_distance, nearest = index.query(queries)
    best, closest = vertex_distance.copy(), index.points[nearest].copy()
    faces = np.asarray(mesh.faces)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    ring = _one_ring(faces, len(vertices))
    for start in range(0, len(queries), _SURFACE_BATCH):
        rows = slice(start, start + _SURFACE_BATCH)
        _closest_in_rings(
            vertices, faces, ring, queries[rows], nearest[rows], best[rows], closest[rows]
        )
    return best, closest


def _closest_in_rings(
    vertices: np.ndarray,
    faces: np.ndarray,
    ring: tuple[np.ndarray, np.ndarray, np.ndarray],
    queries: np.ndarray,
    nearest: np.ndarray,
    best: np.ndarray,
    closest: np.ndarray,
) -> None:
    """Improve ``best``/``closest`` (views, updated in place) with the rings' triangles."""
    ring_faces, ring_starts, ring_counts = ring
    counts = ring_counts[nearest]
    total = int(counts.sum())
    if total == 0:
        return
    owner = np.repeat(np.arange(len(queries)), counts)
    positions = np.repeat(ring_starts[nearest] - (np.cumsum(counts) - counts), counts)
    triangles = vertices[faces[ring_faces[positions + np.arange(total)]]]
    points = trimesh.triangles.closest_point(triangles, queries[owner])
    dist = np.linalg.norm(points - queries[owner], axis=1)
    # Per query minimum over its candidates: sort by (query, distance), keep the first.
    order = np.lexsort((dist, owner))
    first = np.ones(len(order), dtype=bool)
    first[1:] = owner[order[1:]] != owner[order[:-1]]
    chosen = order[first]
    better = dist[chosen] < best[owner[chosen]]
    best[owner[chosen][better]] = dist[chosen][better]
    closest[owner[chosen][better]] = points[chosen][better]


def distance_map(
    source: MeshLike | np.ndarray,
    target: MeshLike | np.ndarray,
    *,
    index: NearestIndex | None = None,
) -> DistanceMap:
    """Distance of every source vertex to the target surface (to its vertices if a point set).

    The scans must already be in one frame: register them with :func:`icp` first.
    """
    queries = _vertices(source)
    target_mesh = _as_mesh(target)
    index = index or NearestIndex(_vertices(target))
    if target_mesh is not None and len(target_mesh.faces):
        distances, closest = _closest_on_surface(target_mesh, index, queries)
    else:
        distances, nearest = index.query(queries)
        closest = index.points[nearest]
    return DistanceMap(distances, closest, DistanceSummary.of(distances))


def _as_mesh(geometry: MeshLike | np.ndarray) -> trimesh.Trimesh | None:
    if isinstance(geometry, MeshInfo):
        return geometry.mesh
    return geometry if isinstance(geometry, trimesh.Trimesh) else None


# --- staged set-ups ---------------------------------------------------------------------------

ARCHES: tuple[Arch, ...] = ("upper", "lower")
# A common aligner staging guide: about 0.25 mm of tooth movement per stage (verify against
# the aligner system's own protocol before relying on the flag).
DEFAULT_STEP_LIMIT_MM = 0.25


@dataclass(frozen=True, slots=True, eq=False)
class SetupStage:
    number: int
    upper: MeshLike | None = None
    lower: MeshLike | None = None

    def arch(self, arch: Arch) -> trimesh.Trimesh | None:
        mesh = self.upper if arch == "upper" else self.lower
        return mesh.mesh if isinstance(mesh, MeshInfo) else mesh


@dataclass(frozen=True, slots=True)
class StageStats:
    number: int
    arch: Arch
    vertices: int
    faces: int
    surface_area_mm2: float
    centroid_mm: tuple[float, float, float]
    bbox_min_mm: tuple[float, float, float]
    bbox_max_mm: tuple[float, float, float]


@dataclass(frozen=True, slots=True, eq=False)
class StageMovement:
    """Movement of one arch from ``from_stage`` to ``to_stage``, per vertex of the first."""

    arch: Arch
    from_stage: int
    to_stage: int
    # "vertex_correspondence" when both stages share topology (exact per-vertex vectors),
    # else "surface_distance" (distance to the other stage's surface: a lower bound).
    method: Literal["vertex_correspondence", "surface_distance"]
    mean_vector_mm: tuple[float, float, float] | None  # only with vertex correspondence
    mean_mm: float
    p95_mm: float
    max_mm: float
    exceeds_step_limit: bool
    per_vertex_mm: np.ndarray = field(repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class SetupAnalysis:
    arches: tuple[Arch, ...]
    stage_numbers: tuple[int, ...]
    stats: tuple[StageStats, ...]
    steps: tuple[StageMovement, ...]  # each consecutive pair, per arch
    totals: tuple[StageMovement, ...]  # first stage to last, per arch
    step_limit_mm: float

    def step(self, arch: Arch, from_stage: int) -> StageMovement:
        for movement in self.steps:
            if movement.arch == arch and movement.from_stage == from_stage:
                return movement
        raise KeyError((arch, from_stage))


def _mismatch(message: str) -> InvalidInput:
    return InvalidInput(STAGES_MISMATCH, message)


def _check_stages(
    stages: Sequence[SetupStage],
) -> tuple[list[int], dict[Arch, list[trimesh.Trimesh]]]:
    """Stage numbers in order and, per arch present, its mesh at every stage."""
    if len(stages) < 2:
        raise _mismatch("a set-up needs at least two stages")
    ordered = sorted(stages, key=lambda stage: stage.number)
    numbers = [stage.number for stage in ordered]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise _mismatch(f"stage numbers must be consecutive without repeats, got {numbers}")
    series: dict[Arch, list[trimesh.Trimesh]] = {}
    for arch in ARCHES:
        meshes = [stage.arch(arch) for stage in ordered]
        present = [mesh for mesh in meshes if mesh is not None and len(mesh.faces)]
        if not present:
            continue
        if len(present) != len(meshes):
            missing = [
                n for n, m in zip(numbers, meshes, strict=True) if m is None or not len(m.faces)
            ]
            raise _mismatch(f"the {arch} arch is missing or empty at stages {missing}")
        series[arch] = present
    if not series:
        raise _mismatch("no stage holds a mesh")
    return numbers, series


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _stats(number: int, arch: Arch, mesh: trimesh.Trimesh) -> StageStats:
    low, high = mesh.bounds
    return StageStats(
        number=number,
        arch=arch,
        vertices=len(mesh.vertices),
        faces=len(mesh.faces),
        surface_area_mm2=float(mesh.area),
        centroid_mm=_triple(np.asarray(mesh.vertices).mean(axis=0)),
        bbox_min_mm=_triple(low),
        bbox_max_mm=_triple(high),
    )


def shares_topology(first: trimesh.Trimesh, second: trimesh.Trimesh) -> bool:
    return len(first.vertices) == len(second.vertices) and np.array_equal(
        np.asarray(first.faces), np.asarray(second.faces)
    )


def stage_movement(
    arch: Arch,
    from_stage: int,
    to_stage: int,
    first: trimesh.Trimesh,
    second: trimesh.Trimesh,
    step_limit_mm: float = DEFAULT_STEP_LIMIT_MM,
) -> StageMovement:
    if shares_topology(first, second):
        vectors = np.asarray(second.vertices) - np.asarray(first.vertices)
        per_vertex = np.linalg.norm(vectors, axis=1)
        mean_vector: tuple[float, float, float] | None = _triple(vectors.mean(axis=0))
        method: Literal["vertex_correspondence", "surface_distance"] = "vertex_correspondence"
    else:
        per_vertex = distance_map(first, second).distances_mm
        mean_vector, method = None, "surface_distance"
    max_mm = float(per_vertex.max())
    return StageMovement(
        arch=arch,
        from_stage=from_stage,
        to_stage=to_stage,
        method=method,
        mean_vector_mm=mean_vector,
        mean_mm=float(per_vertex.mean()),
        p95_mm=float(np.percentile(per_vertex, 95)),
        max_mm=max_mm,
        exceeds_step_limit=max_mm > step_limit_mm,
        per_vertex_mm=per_vertex,
    )


def analyse_setup(
    stages: Sequence[SetupStage], *, step_limit_mm: float = DEFAULT_STEP_LIMIT_MM
) -> SetupAnalysis:
    """Statistics per stage and arch, movement per step and in total.

    Stages must be numbered consecutively, and an arch present at one stage must be present
    at all of them; otherwise ``setup_stages_mismatch``.
    """
    numbers, series = _check_stages(stages)
    stats, steps, totals = [], [], []
    for arch, meshes in series.items():
        stats.extend(_stats(n, arch, m) for n, m in zip(numbers, meshes, strict=True))
        for k in range(len(meshes) - 1):
            movement = stage_movement(
                arch, numbers[k], numbers[k + 1], meshes[k], meshes[k + 1], step_limit_mm
            )
            steps.append(movement)
        totals.append(
            stage_movement(arch, numbers[0], numbers[-1], meshes[0], meshes[-1], math.inf)
        )
    return SetupAnalysis(
        arches=tuple(series),
        stage_numbers=tuple(numbers),
        stats=tuple(stats),
        steps=tuple(steps),
        totals=tuple(totals),
        step_limit_mm=step_limit_mm,
    )


# --- colour map -------------------------------------------------------------------------------

# ColorBrewer RdYlBu, reversed: blue (no movement) through yellow to red (the most).
_COLOUR_STOPS = np.array(
    [[44, 123, 182], [171, 217, 233], [255, 255, 191], [253, 174, 97], [215, 25, 28]],
    dtype=np.float64,
)
_LEGEND_HEIGHT = 36


def colour_scale(values: np.ndarray, vmax: float) -> np.ndarray:
    """RGB (uint8) for each value, 0 -> blue, ``vmax`` and above -> red."""
    t = np.clip(np.asarray(values, dtype=np.float64) / max(vmax, 1e-12), 0.0, 1.0)
    position = t * (len(_COLOUR_STOPS) - 1)
    low = np.minimum(position.astype(np.int64), len(_COLOUR_STOPS) - 2)
    frac = (position - low)[:, None]
    colours = _COLOUR_STOPS[low] * (1 - frac) + _COLOUR_STOPS[low + 1] * frac
    return np.round(colours).astype(np.uint8)


def displacement_image(
    mesh: MeshLike,
    values_mm: np.ndarray,
    *,
    size: int = 512,
    vmax_mm: float | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """A colour-map view of per-vertex values (movement, distance), with a scale bar.

    The view looks along the mesh's thinnest principal axis (occlusal view of an arch); each
    vertex is drawn as a small square sized to the mean edge length, nearest one on top.
    """
    source = mesh.mesh if isinstance(mesh, MeshInfo) else mesh
    vertices = np.asarray(source.vertices, dtype=np.float64)
    values = np.asarray(values_mm, dtype=np.float64)
    if values.shape != (len(vertices),):
        raise InvalidInput("invalid_values", "one value per vertex is needed")
    vmax = float(np.nanmax(values)) if vmax_mm is None else vmax_mm
    axes = _principal_axes(vertices)  # ascending spread: the last two span the view
    view = (vertices - vertices.mean(axis=0)) @ axes[:, ::-1]
    span = float(np.ptp(view[:, :2], axis=0).max()) or 1.0
    scale = (size - 16) / span
    low = view[:, :2].min(axis=0)
    px = np.round((view[:, 0] - low[0]) * scale + 8).astype(np.int64)
    py = np.round((view[:, 1] - low[1]) * scale + 8).astype(np.int64)
    edges = np.asarray(source.edges_unique_length) if len(source.faces) else np.array([1.0])
    radius = int(np.clip(round(float(edges.mean()) * scale / 2), 0, 6))
    colours = colour_scale(np.nan_to_num(values), vmax)
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = background
    _splat(canvas, px, py, view[:, 2], colours, radius)
    image = Image.new("RGB", (size, size + _LEGEND_HEIGHT), background)
    image.paste(Image.fromarray(canvas, "RGB"), (0, 0))
    _legend(image, size, vmax)
    return image


def _splat(
    canvas: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    depth: np.ndarray,
    colours: np.ndarray,
    radius: int,
) -> None:
    size = canvas.shape[0]
    offsets = np.arange(-radius, radius + 1)
    ox, oy = (a.ravel() for a in np.meshgrid(offsets, offsets))
    x = (px[:, None] + ox[None, :]).ravel()
    y = (py[:, None] + oy[None, :]).ravel()
    vertex = np.repeat(np.arange(len(px)), len(ox))
    inside = (x >= 0) & (y >= 0) & (x < size) & (y < size)
    x, y, vertex = x[inside], y[inside], vertex[inside]
    pixel = y * size + x
    # Nearest to the viewer (largest depth) first within each pixel, then keep that one.
    order = np.lexsort((-depth[vertex], pixel))
    pixel, vertex = pixel[order], vertex[order]
    first = np.ones(len(pixel), dtype=bool)
    first[1:] = pixel[1:] != pixel[:-1]
    flat = canvas.reshape(-1, 3)
    flat[pixel[first]] = colours[vertex[first]]


def _legend(image: Image.Image, size: int, vmax: float) -> None:
    bar_width = size - 120
    ramp = colour_scale(np.linspace(0.0, vmax, bar_width), vmax)
    bar = np.repeat(ramp[None, :, :], 12, axis=0)
    image.paste(Image.fromarray(bar, "RGB"), (60, size + 4))
    draw = ImageDraw.Draw(image)
    draw.text((8, size + 4), "0 mm", fill=(0, 0, 0))
    draw.text((size - 56, size + 4), f"{vmax:.2f} mm", fill=(0, 0, 0))
