import json
import math

import numpy as np
import pytest
import torch

from bmclib import skeleton as sk
from bmclib.biomech import compose, decompose, normalize_scale
from bmclib.handmodel import template_pose
from bmclib.limits import BMCLimits, dilate_polygon, fit_polygon
from bmclib.losses import TERM_NAMES, plausible, violations



def _inside(poly, pts, tol=1e-12):
    a, b = poly, np.roll(poly, -1, axis=0)
    cross = (b - a)[None, :, 0] * (pts[:, None, 1] - a[None, :, 1]) - (b - a)[None, :, 1] * (pts[:, None, 0] - a[None, :, 0])
    return (cross >= -tol).all(1)


def _convex_ccw(poly):
    e = np.roll(poly, -1, axis=0) - poly
    turn = e[:, 0] * np.roll(e, -1, axis=0)[:, 1] - e[:, 1] * np.roll(e, -1, axis=0)[:, 0]
    return (turn > -1e-12).all()


# ---------------------------------------------------------------- polygon fitting
def test_fit_polygon_drops_outliers_and_keeps_coverage():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, size=(5000, 2))
    pts = np.concatenate([pts, [[3.0, 0.0], [0.0, -2.5]]])  # two outliers
    full = fit_polygon(pts, coverage=1.0)
    assert _inside(full, pts).all()
    poly = fit_polygon(pts, coverage=0.999)
    assert _convex_ccw(poly)
    inside = _inside(poly, pts)
    assert inside.mean() >= 0.999
    assert not inside[-2:].any()  # the outliers are cut off
    assert np.abs(poly).max() < 1.01  # back to the square: the hull no longer reaches the outliers
    area = lambda p: 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])  # noqa: E731
    assert area(poly) < 4.0 < area(full)


def test_fit_polygon_max_vertices():
    pts = np.random.default_rng(1).normal(size=(2000, 2))
    poly = fit_polygon(pts, coverage=1.0, max_vertices=8)
    assert len(poly) == 8 and _convex_ccw(poly)


def test_fit_polygon_degenerate_points_give_a_box():
    pts = np.stack([np.linspace(-0.5, 1.0, 50), np.zeros(50)], 1)  # a hinge joint: no abduction
    poly = fit_polygon(pts, min_extent=0.02)
    assert len(poly) == 4 and _convex_ccw(poly)
    assert poly[:, 1].min() == pytest.approx(-0.01) and poly[:, 1].max() == pytest.approx(0.01)
    assert _inside(poly, pts).all()
    one = fit_polygon(np.array([[0.3, 0.1]]))
    assert _inside(one, np.array([[0.3, 0.1]])).all()


def test_fit_polygon_bad_args():
    with pytest.raises(ValueError, match="coverage"):
        fit_polygon(np.zeros((10, 2)), coverage=1.5)
    with pytest.raises(ValueError, match=r"\(10, 3\)"):
        fit_polygon(np.zeros((10, 3)))


def test_dilate_polygon_moves_edges_out():
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert np.allclose(dilate_polygon(square, 0.1), [[-0.1, -0.1], [1.1, -0.1], [1.1, 1.1], [-0.1, 1.1]])


# ---------------------------------------------------------------- BMCLimits.fit
def test_fit_covers_the_data(hands):
    joints, angles = hands
    lim = BMCLimits.fit(joints, coverage=0.99)
    norm, _ = normalize_scale(joints)
    d = decompose(norm)
    assert np.allclose(lim.bone_length[:, 0], d.bone_lengths.amin(0).numpy())
    assert np.allclose(lim.bone_length[:, 1], d.bone_lengths.amax(0).numpy())
    assert lim.bone_length[sk.bone_index(9, 10)] == pytest.approx([1.0, 1.0])
    pts = d.angles.reshape(-1, 15, 2).numpy()
    for j, poly in enumerate(lim.angle_polygons):
        assert _convex_ccw(poly)
        assert _inside(poly, pts[:, j]).mean() >= 0.99
    assert lim.meta["n_poses"] == len(joints) and lim.meta["coverage"] == 0.99
    # units: metric and pre-normalised poses give the same limits
    again = BMCLimits.fit(norm * 3.0, coverage=0.99)
    assert np.allclose(again.root_curvature, lim.root_curvature)


def test_fit_accepts_numpy_and_rejects_bad_input(hands):
    lim = BMCLimits.fit(hands[0][:50].numpy(), coverage=1.0)
    assert len(lim.angle_polygons) == 15
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        BMCLimits.fit(torch.zeros(21, 3))
    with pytest.raises(ValueError, match="at least 3"):
        BMCLimits.fit(hands[0][:2])
    bad = hands[0][:10].clone()
    bad[3, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        BMCLimits.fit(bad)


def test_fit_other_reference_bone(hands):
    lim = BMCLimits.fit(hands[0], reference_bone=(5, 6), coverage=1.0)
    assert lim.bone_length[sk.bone_index(5, 6)] == pytest.approx([1.0, 1.0])
    assert lim.reference_bone == (5, 6)


# ---------------------------------------------------------------- defaults
def test_default_limits_are_literature_ranges():
    lim = BMCLimits.default()
    deg = 180 / math.pi
    pip = lim.angle_polygons[sk.ANGLE_JOINT_NAMES.index("little_pip")]
    assert pip[:, 0].min() * deg == pytest.approx(0.0) and pip[:, 0].max() * deg == pytest.approx(135.0)
    assert "literature" in lim.meta["source"]
    assert plausible(template_pose(dtype=torch.float64)[None], lim).all()
    assert BMCLimits.default() is BMCLimits.default()  # built once
    with pytest.raises(ValueError):
        lim.bone_length[0, 0] = 5.0  # shared and read-only


def test_plausible_and_violations():
    lim = BMCLimits.default()
    flat = template_pose(dtype=torch.float64)[None]
    bad = compose(decompose(flat).with_angle("ring", 1, flexion=-0.5))
    v = violations(torch.cat([flat, bad]), lim)
    assert v.shape == (2, 43) == (2, len(TERM_NAMES))
    assert not v[0].any()
    assert v[1].nonzero()[:, 0].tolist() == [20 + 4 + 4 + sk.ANGLE_JOINT_NAMES.index("ring_pip")]
    assert TERM_NAMES[20 + 4 + 4 + sk.ANGLE_JOINT_NAMES.index("ring_pip")] == "angles ring_pip"
    assert TERM_NAMES[20].startswith("curvature") and TERM_NAMES[24].startswith("root angle")  # per_root's order
    assert plausible(torch.cat([flat, bad]), lim).tolist() == [True, False]


# ---------------------------------------------------------------- validation
def _polys():
    return BMCLimits.default().angle_polygons


def test_clockwise_polygons_are_reoriented():
    polys = list(_polys())
    polys[0] = polys[0][::-1]
    lim = BMCLimits(BMCLimits.default().bone_length, np.zeros((4, 2)), np.zeros((4, 2)), polys)
    assert np.allclose(lim.angle_polygons[0], _polys()[0][::-1][::-1]) or _convex_ccw(lim.angle_polygons[0])
    assert _convex_ccw(lim.angle_polygons[0])


@pytest.mark.parametrize("change, match", [
    (lambda p: p.__setitem__(3, np.array([[0, 0], [1, 0], [0.2, 0.2], [0, 1.0]])), "not convex"),
    (lambda p: p.__setitem__(3, np.array([[0, 0], [1, 0.0]])), "M >= 3"),
    (lambda p: p.pop(), "15 polygons"),
])
def test_bad_polygons(change, match):
    polys = list(_polys())
    change(polys)
    with pytest.raises(ValueError, match=match):
        BMCLimits(BMCLimits.default().bone_length, np.zeros((4, 2)), np.zeros((4, 2)), polys)


def test_bad_intervals():
    d = BMCLimits.default()
    with pytest.raises(ValueError, match=r"bone_length: expected shape \(20, 2\)"):
        BMCLimits(d.bone_length[:5], d.root_angle, d.root_curvature, d.angle_polygons)
    swapped = d.root_angle[:, ::-1]
    with pytest.raises(ValueError, match="low > high"):
        BMCLimits(d.bone_length, swapped, d.root_curvature, d.angle_polygons)
    with pytest.raises(ValueError, match="not a bone"):
        BMCLimits(d.bone_length, d.root_angle, d.root_curvature, d.angle_polygons, reference_bone=(0, 7))


# ---------------------------------------------------------------- I/O and display
def test_save_load_round_trip(tmp_path, hands):
    lim = BMCLimits.fit(hands[0], coverage=0.995)
    path = lim.save(tmp_path / "sub" / "limits.json")
    assert not list(path.parent.glob(".*tmp"))  # no temporary file left behind
    back = BMCLimits.load(path)
    assert np.array_equal(back.bone_length, lim.bone_length)
    assert np.array_equal(back.root_angle, lim.root_angle)
    assert np.array_equal(back.root_curvature, lim.root_curvature)
    for a, b in zip(back.angle_polygons, lim.angle_polygons):
        assert np.array_equal(a, b)
    assert back.meta == lim.meta
    data = json.loads(path.read_text())
    assert data["format"] == "bmclib.limits" and data["version"] == 1
    assert "index_pip" in data["angle_polygons"] and "middle_mcp->middle_pip" in data["bone_length"]


def test_load_errors_name_the_file(tmp_path):
    good = BMCLimits.default().to_dict()
    cases = {
        "notjson.json": "{not json",
        "format.json": json.dumps({**good, "format": "other"}),
        "version.json": json.dumps({**good, "version": 99}),
        "missing.json": json.dumps({k: v for k, v in good.items() if k != "root_angle"}),
        "shape.json": json.dumps({**good, "root_angle": [[0, 1]]}),
    }
    messages = {"notjson.json": "not valid JSON", "format.json": "not a bmclib limits file",
                "version.json": "version 99", "missing.json": "missing field 'root_angle'",
                "shape.json": r"root_angle: expected shape \(4, 2\)"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=messages[name]) as e:
            BMCLimits.load(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        BMCLimits.load(tmp_path / "nowhere.json")


def test_summary_and_repr():
    lim = BMCLimits.default()
    text = lim.summary()
    for name in sk.ANGLE_JOINT_NAMES:
        assert name in text
    assert "middle_mcp->middle_pip" in text and "thumb-index" in text
    assert str(lim) == text
    assert repr(lim).startswith("BMCLimits(source=")
