"""Set-up stages, ICP and distance maps on generated meshes with known motions."""

import math

import numpy as np
import pytest
import trimesh
import trimesh.triangles
from PIL import Image

from adapters.setup_analysis import (
    STAGES_MISMATCH,
    NearestIndex,
    SetupStage,
    analyse_setup,
    colour_scale,
    displacement_image,
    distance_map,
    icp,
    kabsch,
)
from domain.errors import InvalidInput

MESHES = "/work/shared/testdata/meshes/trimesh"


def sphere(radius=10.0, subdivisions=3):
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    mesh.vertices *= radius
    return mesh


def moved(mesh, offset):
    return trimesh.Trimesh(mesh.vertices + np.asarray(offset), mesh.faces, process=False)


def rigid(angle_deg, axis, translation):
    matrix = trimesh.transformations.rotation_matrix(math.radians(angle_deg), axis)
    matrix[:3, 3] = translation
    return matrix


@pytest.fixture(scope="module")
def bunny_mm():
    mesh = trimesh.load(f"{MESHES}/bunny.ply")
    # The bunny is in metres-ish units, 0.15 across: scale to a 60 mm, arch-sized object.
    mesh.vertices = (mesh.vertices - mesh.vertices.mean(axis=0)) * 400.0
    return mesh


# --- staged set-ups -----------------------------------------------------------------------------

# Cumulative translations of the upper arch per stage (mm); each step is known exactly.
UPPER_STEPS = [(0, 0, 0), (0.2, 0, 0), (0.2, 0.15, 0), (0.2, 0.15, -0.3), (0.25, 0.1, -0.3)]
LOWER_STEPS = [(0, 0, 0), (0, 0, 0), (-0.1, 0, 0), (-0.1, 0, 0.1), (-0.1, 0.05, 0.1)]


@pytest.fixture(scope="module")
def setup():
    upper = sphere(12.0)
    lower = trimesh.creation.box(extents=(30, 20, 8))
    stages = [
        SetupStage(k, upper=moved(upper, UPPER_STEPS[k]), lower=moved(lower, LOWER_STEPS[k]))
        for k in range(len(UPPER_STEPS))
    ]
    return analyse_setup(list(reversed(stages)))  # order of the input does not matter


def test_per_stage_movement_is_recovered(setup):
    assert setup.stage_numbers == (0, 1, 2, 3, 4)
    assert setup.arches == ("upper", "lower")
    for arch, steps in (("upper", UPPER_STEPS), ("lower", LOWER_STEPS)):
        for k in range(len(steps) - 1):
            movement = setup.step(arch, k)
            expected = np.subtract(steps[k + 1], steps[k])
            assert movement.method == "vertex_correspondence"
            assert movement.mean_vector_mm == pytest.approx(tuple(expected), abs=0.05)
            # A pure translation moves every vertex by its length.
            assert movement.mean_mm == pytest.approx(np.linalg.norm(expected), abs=0.05)
            assert movement.max_mm == pytest.approx(np.linalg.norm(expected), abs=0.05)
            assert movement.per_vertex_mm.shape == (len(setup_mesh_vertices(arch)),)


def setup_mesh_vertices(arch):
    return sphere(12.0).vertices if arch == "upper" else trimesh.creation.box().vertices


def test_totals_and_step_limit(setup):
    total = next(t for t in setup.totals if t.arch == "upper")
    assert total.mean_vector_mm == pytest.approx((0.25, 0.1, -0.3), abs=1e-9)
    # Step 2 -> 3 moves 0.3 mm, over the 0.25 mm guide; step 0 -> 1 (0.2 mm) is not.
    assert setup.step("upper", 2).exceeds_step_limit
    assert not setup.step("upper", 0).exceeds_step_limit


def test_per_stage_statistics(setup):
    upper = [s for s in setup.stats if s.arch == "upper"]
    assert [s.number for s in upper] == [0, 1, 2, 3, 4]
    assert upper[0].vertices == 642 and upper[0].faces == 1280
    assert upper[4].centroid_mm == pytest.approx(UPPER_STEPS[4], abs=1e-9)
    lower = [s for s in setup.stats if s.arch == "lower"]
    assert lower[0].surface_area_mm2 == pytest.approx(2 * (30 * 20 + 30 * 8 + 20 * 8))


def test_stages_without_shared_topology_use_surface_distance():
    coarse, fine = sphere(10.0, 3), moved(sphere(10.0, 4), (0.3, 0, 0))
    result = analyse_setup([SetupStage(1, lower=coarse), SetupStage(2, lower=fine)])
    step = result.step("lower", 1)
    assert step.method == "surface_distance" and step.mean_vector_mm is None
    # A sphere shifted 0.3 mm: surface distances run from about 0 to 0.3 mm.
    assert 0.25 < step.max_mm <= 0.31 and 0.05 < step.mean_mm < 0.25


def mismatch(stages):
    with pytest.raises(InvalidInput) as err:
        analyse_setup(stages)
    return err.value.code


def test_mismatched_stages():
    mesh = sphere()
    assert mismatch([SetupStage(0, upper=mesh)]) == STAGES_MISMATCH
    assert mismatch([SetupStage(0, upper=mesh), SetupStage(2, upper=mesh)]) == STAGES_MISMATCH
    assert mismatch([SetupStage(0, upper=mesh), SetupStage(0, upper=mesh)]) == STAGES_MISMATCH
    assert (
        mismatch([SetupStage(0, upper=mesh, lower=mesh), SetupStage(1, upper=mesh)])
        == STAGES_MISMATCH
    )
    assert mismatch([SetupStage(0), SetupStage(1)]) == STAGES_MISMATCH
    empty = trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=int))
    assert mismatch([SetupStage(0, upper=mesh), SetupStage(1, upper=empty)]) == STAGES_MISMATCH


# --- ICP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("angle", "axis", "translation"),
    [
        (4.0, (0.3, 0.8, 0.5), (2.0, -1.5, 3.0)),
        (-3.0, (1.0, 0.2, -0.4), (-2.5, 0.5, 1.0)),
    ],
)
def test_icp_recovers_a_known_rigid_motion(bunny_mm, angle, axis, translation):
    motion = rigid(angle, axis, translation)
    source = bunny_mm.vertices @ motion[:3, :3].T + motion[:3, 3]
    result = icp(source, bunny_mm)
    truth = np.linalg.inv(motion)
    relative = result.rotation @ truth[:3, :3].T
    angle_error = math.degrees(math.acos(np.clip((np.trace(relative) - 1) / 2, -1, 1)))
    assert angle_error < 0.1
    assert result.rotation_deg == pytest.approx(abs(angle), abs=0.1)
    aligned = result.apply(source)
    assert np.linalg.norm(aligned - bunny_mm.vertices, axis=1).max() < 0.01
    assert np.linalg.norm(result.translation - truth[:3, 3]) < 0.01
    assert np.linalg.det(result.rotation) == pytest.approx(1.0)  # proper rotation, no scale
    assert result.rms_mm < 0.01 and result.converged
    np.testing.assert_allclose(result.matrix[:3, :3], result.rotation)


def test_icp_from_principal_axes_for_a_large_turn(bunny_mm):
    # 60 degrees about the vertical is beyond plain ICP's basin; the principal-axes start
    # candidates bring it back.
    motion = rigid(60.0, (0, 1, 0), (10.0, 0.0, -5.0))
    source = bunny_mm.vertices @ motion[:3, :3].T + motion[:3, 3]
    result = icp(source, bunny_mm)
    assert np.linalg.norm(result.apply(source) - bunny_mm.vertices, axis=1).max() < 0.01


def test_kabsch_never_reflects():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(20, 3))
    rotation, _ = kabsch(points, points * np.array([1, 1, -1]))
    assert np.linalg.det(rotation) == pytest.approx(1.0)


# --- nearest neighbours and distance maps -----------------------------------------------------


def test_nearest_index_matches_brute_force():
    rng = np.random.default_rng(1)
    points = sphere(20.0, 4).vertices + rng.normal(scale=0.01, size=(2562, 3))
    index = NearestIndex(points)
    near = points[rng.choice(len(points), 300)] + rng.normal(scale=0.2, size=(300, 3))
    far = rng.normal(scale=60.0, size=(300, 3))  # well outside the sphere too
    for queries in (near, far):
        distances, found = index.query(queries)
        brute = np.linalg.norm(queries[:, None, :] - points[None, :, :], axis=2)
        np.testing.assert_allclose(distances, brute.min(axis=1), atol=1e-9)
        np.testing.assert_allclose(distances, np.linalg.norm(points[found] - queries, axis=1))


def test_distance_map_on_concentric_spheres():
    inner, outer = sphere(10.0, 4), sphere(10.2, 4)
    result = distance_map(inner, outer)
    # Each inner vertex is 0.2 mm below the outer sphere's vertices; the outer facets sag
    # inwards by about edge^2 / (8 R) = 0.6^2 / 80 < 0.005 mm between them.
    assert result.distances_mm.min() > 0.19 and result.distances_mm.max() <= 0.2 + 1e-9
    s = result.summary
    assert s.count == len(inner.vertices)
    assert 0.19 < s.mean_mm <= s.p95_mm <= s.max_mm
    assert (s.within_0_25_pct, s.within_0_5_pct) == (100.0, 100.0)
    # Against the exact closest point over every triangle, for a sample of vertices.
    sample = inner.vertices[::40]
    triangles = outer.triangles
    exact = []
    for q in sample:
        closest = trimesh.triangles.closest_point(triangles, np.repeat(q[None], len(triangles), 0))
        exact.append(np.linalg.norm(closest - q, axis=1).min())
    np.testing.assert_allclose(result.distances_mm[::40], exact, atol=1e-9)


def test_distance_summary_thresholds():
    flat = trimesh.creation.box(extents=(10, 10, 1))
    points = np.array([[0, 0, 0.5 + d] for d in (0.1, 0.2, 0.3, 0.6)])
    s = distance_map(points, flat).summary
    assert s.max_mm == pytest.approx(0.6)
    assert (s.within_0_25_pct, s.within_0_5_pct) == (50.0, 75.0)


def test_colour_map_image(setup):
    mesh = sphere(12.0)
    values = mesh.vertices[:, 0] - mesh.vertices[:, 0].min()
    image = displacement_image(mesh, values, size=200)
    assert isinstance(image, Image.Image) and image.size == (200, 236)
    pixels = np.asarray(image)[:200]
    painted = (pixels != 255).any(axis=2)
    assert painted.mean() > 0.3  # the sphere covers a good part of the view
    ends = colour_scale(np.array([0.0, 1.0, 5.0]), 1.0)
    assert ends[0].tolist() == [44, 123, 182] and ends[1].tolist() == ends[2].tolist()
    with pytest.raises(InvalidInput):
        displacement_image(mesh, values[:-1])
