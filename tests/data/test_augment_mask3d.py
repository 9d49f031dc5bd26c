"""Mask3D's augmentations (issue 29 item 2): elastic distortion, per-axis scale, tilts, brightness / contrast and RGB
shift, each against a direct computation on hand-made inputs, and the default augmentation unchanged bit for bit."""

import numpy as np
import pytest
from pydantic import ValidationError

from freepoint_bench.data.transforms import augment, elastic_distortion
from freepoint_bench.engine.data import augment_points
from freepoint_bench.engine.presets import AugmentConfig, get_preset

OFF = dict(rotate_z=False, flip=False, scale=None, jitter=0.0, color_jitter=0.0)  # every older step off

XYZ6 = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.2], [2.0, 1.5, 1.0], [0.3, 2.0, 2.5], [1.7, 0.1, 0.4], [0.9, 1.1, 3.0]])
RGB6 = np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7], [0.5, 0.5, 0.5], [0.0, 1.0, 0.2], [0.4, 0.6, 0.95],
                 [0.33, 0.66, 0.99]])
# augment(XYZ6, RGB6, default_rng(2024)) with every argument at its default, recorded from the code before the
# Mask3D fields existed (commit 75c5cdb)
RECORDED_XYZ = np.float32([
    [1.463666319847107, -0.4227783679962158, 0.0043067545630037785],
    [1.4759820699691772, 0.7709304094314575, 0.2157328575849533],
    [1.0060046911239624, 2.1813366413116455, 1.0543546676635742],
    [-0.2728196978569031, 0.8136759996414185, 2.6537907123565674],
    [2.1786723136901855, 1.2320109605789185, 0.417501837015152],
    [0.85381019115448, 0.9574522972106934, 3.172276735305786]])
RECORDED_RGB = np.float32([
    [0.07329535484313965, 0.20818942785263062, 0.26657649874687195],
    [0.8873854875564575, 0.7889069318771362, 0.7209069132804871],
    [0.47843727469444275, 0.5136130452156067, 0.5028409361839294],
    [0.02122846245765686, 1.0, 0.2828842103481293],
    [0.3668161928653717, 0.6599593758583069, 0.9298693537712097],
    [0.28210368752479553, 0.7205597162246704, 0.968024730682373]])


def _room(n, seed=0, size=(4.0, 3.0, 2.5)):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, size, size=(n, 3)), rng.uniform(0.0, 1.0, size=(n, 3))


def _old_augment(xyz, rgb, rng):
    """The rule before the Mask3D fields, at its defaults (75c5cdb): rotation about z, flips, isotropic scale 0.9-1.1,
    jitter 0.005, colour noise 0.05, about the xy box centre."""
    xyz, rgb = np.asarray(xyz, np.float64), np.asarray(rgb, np.float64)
    centre = np.zeros(3)
    centre[:2] = (xyz[:, :2].min(0) + xyz[:, :2].max(0)) / 2
    a = rng.uniform(0.0, 2.0 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    out = (xyz - centre) @ rot.T
    out[:, :2] *= np.where(rng.random(2) < 0.5, -1.0, 1.0)
    out *= rng.uniform(0.9, 1.1)
    out += rng.normal(0.0, 0.005, size=out.shape)
    out += centre
    colours = np.clip(rgb + rng.normal(0.0, 0.05, size=rgb.shape), 0.0, 1.0)
    return out.astype(np.float32), colours.astype(np.float32)


# ------------------------------------------------------------------------------------------- defaults unchanged


def test_defaults_give_the_recorded_output_bit_for_bit():
    out, colours = augment(XYZ6, RGB6, np.random.default_rng(2024))
    np.testing.assert_array_equal(out, RECORDED_XYZ)
    np.testing.assert_array_equal(colours, RECORDED_RGB)
    out, colours = augment_points(XYZ6, RGB6, AugmentConfig(), np.random.default_rng(2024))
    np.testing.assert_array_equal(out, RECORDED_XYZ)
    np.testing.assert_array_equal(colours, RECORDED_RGB)
    xyz, rgb = _room(500, seed=3)
    for seed in range(5):
        new = augment_points(xyz, rgb, AugmentConfig(), np.random.default_rng(seed))
        old = _old_augment(xyz, rgb, np.random.default_rng(seed))
        np.testing.assert_array_equal(new[0], old[0])
        np.testing.assert_array_equal(new[1], old[1])


def test_records_leave_the_new_fields_out_at_their_defaults():
    older = ["rotate_z", "flip_xy", "scale_min", "scale_max", "jitter_sigma_m", "color_jitter"]
    for mode in ("python", "json"):
        assert list(AugmentConfig().model_dump(mode=mode)) == older
        assert list(get_preset("cpu-small").model_dump(mode=mode)["augment"]) == older
    assert get_preset("paper").augment.elastic == ((0.2, 0.4), (0.8, 1.6))  # the paper preset runs Mask3D's
    mask3d = AugmentConfig(elastic=[[0.2, 0.4], [0.8, 1.6]], elastic_p=0.9, scale_per_axis=True,
                           tilt_max_rad=np.pi / 24, brightness=0.2, contrast=0.2, rgb_shift=20 / 255)
    assert mask3d.elastic == ((0.2, 0.4), (0.8, 1.6))  # --set's TOML arrays validate to the tuples
    assert mask3d.model_dump(mode="json")["elastic"] == [[0.2, 0.4], [0.8, 1.6]]
    assert list(mask3d.model_dump()) == older + ["elastic", "elastic_p", "scale_per_axis", "tilt_max_rad",
                                                 "brightness", "contrast", "rgb_shift"]
    assert AugmentConfig.model_validate(mask3d.model_dump(mode="json")) == mask3d  # a record reads back
    preset = get_preset("cpu-small", **{"augment.elastic": [[0.2, 0.4]], "augment.tilt_max_rad": 0.1})
    assert preset.augment.elastic == ((0.2, 0.4),) and preset.model_dump()["augment"]["tilt_max_rad"] == 0.1


@pytest.mark.parametrize("bad", [dict(elastic=((0.0, 0.4),)), dict(elastic=((0.2, -1.0),)), dict(elastic=((0.2,),)),
                                 dict(elastic_p=1.5), dict(tilt_max_rad=-0.1), dict(tilt_max_rad=2.0),
                                 dict(brightness=-0.1), dict(contrast=1.0), dict(rgb_shift=2.0)])
def test_out_of_range_values_are_refused(bad):
    with pytest.raises(ValidationError):
        AugmentConfig(**bad)


# ------------------------------------------------------------------------------------------ elastic distortion


def _smooth(noise):
    """Two rounds of: along x, y, then z, each node the mean of itself and its two neighbours, zero beyond the grid."""
    for _ in range(2):
        for axis in range(3):
            pad = [(0, 0)] * noise.ndim
            pad[axis] = (1, 1)
            padded = np.pad(noise, pad)
            n = noise.shape[axis]
            noise = sum(np.take(padded, np.arange(k, k + n), axis=axis) for k in range(3)) / 3.0
    return noise


def _trilinear(field, position):
    """field (nx, ny, nz, 3) at fractional node positions (N, 3): the 8 corners of each cell, weighted."""
    cell = np.minimum(np.floor(position).astype(int), np.array(field.shape[:3]) - 2)  # the last node: its cell's top
    frac = position - cell
    out = np.zeros((len(position), 3))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = ((frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1])
                     * (frac[:, 2] if dz else 1 - frac[:, 2]))
                out += w[:, None] * field[cell[:, 0] + dx, cell[:, 1] + dy, cell[:, 2] + dz]
    return out


def test_elastic_distortion_is_the_smoothed_interpolated_grid_noise():
    xyz, _ = _room(300, seed=5, size=(1.0, 0.7, 0.45))
    xyz[0] = [0.0, 0.0, 0.0]  # the box's corners: a grid of floor(extent / g) + 3 nodes per axis
    xyz[1] = [1.0, 0.7, 0.45]
    g, m = 0.2, 0.4
    out = elastic_distortion(xyz, g, m, np.random.default_rng(11))
    # Mask3D's floor division: 1.0 // 0.2 is 4.0 in floating point, so the highest point is on the last node
    shape = (int(1.0 // g) + 3, int(0.7 // g) + 3, int(0.45 // g) + 3)
    assert shape == (7, 6, 5)
    field = _smooth(np.random.default_rng(11).standard_normal((*shape, 3)))
    position = (xyz - (xyz.min(0) - g)) / g  # the first node lies one spacing below the lowest point
    np.testing.assert_allclose(out, xyz + m * _trilinear(field, position), rtol=0, atol=1e-12)
    # a point on a node moves by exactly that node's smoothed noise
    node = elastic_distortion(np.array([[0.0, 0.0, 0.0], [0.4, 0.2, 0.2], [1.0, 0.7, 0.45]]), g, m,
                              np.random.default_rng(11))
    np.testing.assert_allclose(node[1] - [0.4, 0.2, 0.2], m * field[3, 2, 2], atol=1e-12)


def test_elastic_zero_magnitude_is_the_identity_and_p_zero_never_applies():
    xyz, rgb = _room(200)
    np.testing.assert_array_equal(elastic_distortion(xyz, 0.2, 0.0, np.random.default_rng(0)), xyz)
    never = dict(OFF, elastic=((0.2, 0.4), (0.8, 1.6)), elastic_p=0.0)
    always = dict(never, elastic_p=1.0)
    applied = 0
    for seed in range(100):
        np.testing.assert_array_equal(augment(xyz, rgb, np.random.default_rng(seed), **never)[0],
                                      xyz.astype(np.float32))
        assert not np.allclose(augment(xyz, rgb, np.random.default_rng(seed), **always)[0], xyz)
        applied += not np.allclose(augment(xyz, rgb, np.random.default_rng(seed), **dict(always, elastic_p=0.5))[0],
                                   xyz)
    assert 35 <= applied <= 65  # p 0.5 over 100 draws (binomial: 5 sd from the mean)


def test_elastic_displacement_is_bounded_by_the_magnitude_and_smooth():
    xyz, _ = _room(20_000, seed=2, size=(6.0, 5.0, 3.0))
    g, m = 0.8, 1.6
    moved = elastic_distortion(xyz, g, m, np.random.default_rng(4)) - xyz
    # the smoothed unit noise has sd (19/81)^1.5 = 0.114 per component at a node, less between nodes
    assert np.abs(moved).max() < m
    assert 0.03 * m < moved.std() < 0.12 * m
    # neighbours 1 cm apart move alike; points a metre apart do not
    near = elastic_distortion(np.concatenate([xyz, xyz + [0.01, 0.0, 0.0]]), g, m, np.random.default_rng(4))
    far = elastic_distortion(np.concatenate([xyz, xyz + [1.0, 0.0, 0.0]]), g, m, np.random.default_rng(4))
    n = len(xyz)
    step_near = np.linalg.norm(near[n:] - near[:n] - [0.01, 0.0, 0.0], axis=1)
    step_far = np.linalg.norm(far[n:] - far[:n] - [1.0, 0.0, 0.0], axis=1)
    assert step_near.max() < 0.02 * m and step_near.mean() < 0.02 * step_far.mean()


# ------------------------------------------------------------------------------------- scale, rotation and tilts


def test_per_axis_scale_is_one_factor_per_axis_before_the_rotation():
    xyz, rgb = _room(100, seed=7)
    centre = np.array([*(xyz[:, :2].min(0) + xyz[:, :2].max(0)) / 2, 0.0])
    out, _ = augment(xyz, rgb, np.random.default_rng(1), **dict(OFF, scale=(0.5, 2.0)), scale_per_axis=True)
    factors = np.random.default_rng(1).uniform(0.5, 2.0, size=3)
    np.testing.assert_allclose(out, (xyz - centre) * factors + centre, atol=1e-5)
    assert np.ptp(factors) > 0.1 and ((0.5 <= factors) & (factors <= 2.0)).all()
    # with the rotation: the room is stretched along its own axes, then turned (Mask3D's Scale3d, then the rotation)
    out, _ = augment(xyz, rgb, np.random.default_rng(2), **dict(OFF, scale=(0.5, 2.0), rotate_z=True),
                     scale_per_axis=True)
    replay = np.random.default_rng(2)
    factors, angle = replay.uniform(0.5, 2.0, size=3), replay.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    np.testing.assert_allclose(out, ((xyz - centre) * factors) @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
                               + centre, atol=1e-5)


def _tilt_matrix(xyz, out):
    """The linear map M with out - c = M (xyz - c), c the xy box centre, by least squares."""
    centre = np.array([*(xyz[:, :2].min(0) + xyz[:, :2].max(0)) / 2, 0.0])
    sol, *_ = np.linalg.lstsq(xyz - centre, out.astype(np.float64) - centre, rcond=None)
    return sol.T


def test_tilts_are_rotations_about_y_then_x_within_the_bound():
    xyz, rgb = _room(50, seed=8)
    bound = np.pi / 24
    largest = 0.0
    for seed in range(200):
        out, colours = augment(xyz, rgb, np.random.default_rng(seed), **OFF, tilt_max_rad=bound)
        tilt = _tilt_matrix(xyz, out)
        np.testing.assert_allclose(tilt @ tilt.T, np.eye(3), atol=1e-5)  # orthonormal
        assert abs(np.linalg.det(tilt) - 1) < 1e-5  # a rotation, not a mirror
        # R_x(b) R_y(a) = [[ca, 0, sa], [sb sa, cb, -sb ca], [-cb sa, sb, cb ca]]
        a, b = np.arctan2(tilt[0, 2], tilt[0, 0]), np.arctan2(tilt[2, 1], tilt[1, 1])
        assert abs(tilt[0, 1]) < 1e-5
        replay = np.random.default_rng(seed)
        np.testing.assert_allclose([a, b], [replay.uniform(-bound, bound), replay.uniform(-bound, bound)], atol=1e-5)
        assert max(abs(a), abs(b)) <= bound + 1e-6
        largest = max(largest, abs(a), abs(b))
        np.testing.assert_array_equal(colours, rgb.astype(np.float32))
    assert largest > 0.95 * bound  # the bound is reached, not a smaller one


# --------------------------------------------------------------------------------------------------- colour


def test_brightness_contrast_and_rgb_shift_follow_albumentations_rules():
    rgb = np.array([[0.0, 0.5, 1.0], [0.05, 0.95, 0.3], [0.9, 0.1, 0.6], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    xyz = np.arange(15, dtype=np.float64).reshape(5, 3)
    clipped = 0
    for seed in range(50):
        out, colours = augment(xyz, rgb, np.random.default_rng(seed), **OFF, brightness=0.2, contrast=0.2,
                               rgb_shift=20 / 255)
        replay = np.random.default_rng(seed)
        alpha, beta = 1 + replay.uniform(-0.2, 0.2), replay.uniform(-0.2, 0.2)  # contrast, then brightness
        shift = replay.uniform(-20 / 255, 20 / 255, size=3)
        expected = np.clip(np.clip(alpha * rgb + beta, 0, 1) + shift, 0, 1)
        np.testing.assert_allclose(colours, expected, atol=1e-6)
        np.testing.assert_array_equal(out, xyz.astype(np.float32))  # geometry untouched
        clipped += int(((alpha * rgb + beta) > 1).any() or ((alpha * rgb + beta) < 0).any())
    assert clipped > 0  # the clip was exercised
    # each alone: brightness shifts every channel alike, contrast scales, the shift is per channel
    _, bright = augment(xyz, rgb, np.random.default_rng(3), **OFF, brightness=0.2)
    replay = np.random.default_rng(3)
    assert replay.uniform(-0.0, 0.0) == 0.0  # contrast 0: alpha is drawn as 1 + U(0, 0) = 1
    np.testing.assert_allclose(bright, np.clip(rgb + replay.uniform(-0.2, 0.2), 0, 1), atol=1e-6)
    _, shifted = augment(xyz, rgb, np.random.default_rng(4), **OFF, rgb_shift=0.1)
    np.testing.assert_allclose(shifted, np.clip(rgb + np.random.default_rng(4).uniform(-0.1, 0.1, 3), 0, 1),
                               atol=1e-6)


def test_augment_points_passes_every_field():
    xyz, rgb = _room(2000, seed=9)
    config = AugmentConfig(elastic=((0.2, 0.4), (0.8, 1.6)), elastic_p=1.0, scale_per_axis=True,
                           tilt_max_rad=np.pi / 24, brightness=0.2, contrast=0.2, rgb_shift=20 / 255,
                           jitter_sigma_m=0.0, color_jitter=0.0)
    got = augment_points(xyz, rgb, config, np.random.default_rng(5))
    want = augment(xyz, rgb, np.random.default_rng(5), rotate_z=True, flip=True, scale=(0.9, 1.1), jitter=0.0,
                   color_jitter=0.0, elastic=((0.2, 0.4), (0.8, 1.6)), elastic_p=1.0, scale_per_axis=True,
                   tilt_max_rad=np.pi / 24, brightness=0.2, contrast=0.2, rgb_shift=20 / 255)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
