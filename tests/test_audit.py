"""The plausibility audit (bmclib.audit): rates in real units, the tolerance, sides and non-finite poses."""
import numpy as np
import pytest

from bmclib import skeleton as sk
from bmclib.audit import DEFAULT_TOLERANCE, TERM_UNITS, audit, degenerate_intervals, term_excess
from bmclib.biomech import compose, decompose
from bmclib.limits import BMCLimits

from conftest import anatomical_hands


@pytest.fixture(scope="module")
def hands():
    """Anatomical right hands, inside the literature limits."""
    return anatomical_hands(16, seed=3)[0]


def test_a_bent_joint_is_found_in_degrees_and_only_above_the_tolerance(hands):
    limits = BMCLimits.default()
    base = audit(hands.numpy(), limits)
    pip = sk.ANGLE_JOINT_NAMES.index("index_pip")
    d = decompose(hands)
    hi = float(np.degrees(limits.angle_polygons[pip][:, 0].max()))  # the PIP's largest flexion
    far = compose(d.with_angle("index", 1, flexion=np.radians(hi + 20.0))).numpy()  # 20 degrees past it
    near = compose(d.with_angle("index", 1, flexion=np.radians(hi + 2.0))).numpy()  # 2 degrees: within 5
    r_far, r_near = audit(far, limits), audit(near, limits)
    term = 28 + pip  # the PIP's angle term
    assert TERM_UNITS[term] == "deg"
    assert r_far["term_rate_tol"][term] == 1.0 and r_far["term_rate_tol"][term] > base["term_rate_tol"][term]
    assert np.allclose(r_far["excess"][:, term], 20.0, atol=0.5)  # the excess, in degrees
    assert r_near["term_rate"][term] == 1.0 and r_near["term_rate_tol"][term] == 0.0  # outside, but within 5 deg
    assert DEFAULT_TOLERANCE["deg"] == 5.0


def test_non_finite_poses_are_counted_not_scored_and_sides_are_hinted(hands):
    x = hands.numpy().copy()
    x[2, 5, 0] = np.nan
    r = audit(x)
    assert r["non_finite"] == 1 and np.isnan(r["excess"][2]).all() and np.isfinite(r["excess"][0]).all()
    left = sk.mirror_joints(hands).numpy()  # left hands audited as right ones
    r = audit(left, side="right")
    assert r["implausible_poses"] > r["mirrored_implausible_poses"] and "--side left" in r["side_hint"]
    assert audit(left, side="left")["side_hint"] == ""


def test_term_excess_units_and_degenerate_intervals():
    limits = BMCLimits.default()
    per = np.zeros((1, 43))
    per[0, 0] = 0.1 * limits.bone_length[0].mean()  # 10% of the bone's typical length
    per[0, 28] = np.radians(7.0)
    ex = term_excess(per, limits)
    assert ex[0, 0] == pytest.approx(10.0) and ex[0, 28] == pytest.approx(7.0)
    assert degenerate_intervals(limits) == []
    flat = BMCLimits(**{**limits.__dict__, "root_curvature": np.zeros((4, 2))})
    assert len(degenerate_intervals(flat)) == 4  # a zero-width palm interval reads as an equality constraint


def test_the_audit_in_chunks_equals_the_audit_at_once(monkeypatch):
    """Memory is bounded by scoring a chunk of poses at a time; the chunks change no number."""
    import bmclib.audit as audit_module

    xyz = anatomical_hands(40, seed=5)[0].numpy()
    xyz[::7, 8] += 0.02  # some implausible tips
    xyz[3, 2, 1] = np.nan
    xyz[::9] = sk.mirror_joints(xyz[::9])  # a few of the other side
    whole = audit(xyz)
    monkeypatch.setattr(audit_module, "AUDIT_CHUNK", 6)
    parts = audit(xyz)
    for k in ("per_sample", "excess", "total", "term_rate", "term_rate_tol", "worst_excess"):
        np.testing.assert_allclose(parts[k], whole[k], rtol=1e-12, atol=1e-15, err_msg=k)
    for k in ("implausible_poses", "implausible_joints", "implausible_poses_tol", "mirrored_implausible_poses",
              "non_finite"):
        assert parts[k] == pytest.approx(whole[k], rel=1e-12), k
    assert 0 < whole["mirrored_implausible_poses"] and whole["non_finite"] == 1
