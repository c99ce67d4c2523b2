import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bmclib import skeleton as sk
from bmclib.biomech import compose, decompose, normalize_scale
from bmclib.handmodel import template_pose
from bmclib.limits import BMCLimits
from bmclib.losses import BMCLoss, interval_loss, polygon_distance

from conftest import anatomical_hands, random_rotation

FLAT = template_pose(dtype=torch.float64)[None]  # (1, 21, 3)


@pytest.fixture(scope="module")
def fitted(hands):
    return BMCLimits.fit(hands[0], coverage=1.0)


def _bent(joints, finger, joint, flexion=None, abduction=None):
    return compose(decompose(joints).with_angle(finger, joint, flexion=flexion, abduction=abduction))


# ---------------------------------------------------------------- zero inside
def test_zero_on_the_data_the_limits_were_fitted_to(hands, fitted):
    for distance in ("halfplane", "exact"):
        out = BMCLoss(fitted, reduction="none", angle_distance=distance)(hands[0])
        assert out.total.shape == (len(hands[0]),)
        assert out.total.max() < 1e-9, distance


def test_flat_template_is_inside_default_limits():
    out = BMCLoss(reduction="sum")(FLAT)
    assert float(out.total) == 0.0


# ---------------------------------------------------------------- hand-computed values
@pytest.mark.parametrize("distance", ["halfplane", "exact"])
def test_a_zero_loss_has_a_zero_gradient(distance):
    # the template's PIP and DIP flexions lie exactly on their 0 degree bounds: on the boundary
    # the loss is 0 and so must be its gradient (halfplane's clamp_min gave a norm of 8.4)
    j = FLAT.clone().requires_grad_(True)
    out = BMCLoss(BMCLimits.default(), angle_distance=distance)(j)
    out.total.sum().backward()
    assert float(out.total.detach().sum()) == 0.0 and float(j.grad.abs().max()) == 0.0
    # just outside (hyperextended PIP), the gradient is there and points back inside
    bent = _bent(FLAT, 2, 1, flexion=-0.1).requires_grad_(True)
    BMCLoss(BMCLimits.default(), angle_distance=distance)(bent).total.sum().backward()
    assert float(bent.grad.abs().max()) > 0


def test_angle_term_measures_distance_to_the_range():
    """Index PIP range is 0..110 deg flexion, +-10 deg abduction (a box)."""
    loss = BMCLoss(reduction="none", angle_distance="exact")
    hyper = _bent(FLAT, "index", 1, flexion=-0.5)  # 0.5 rad beyond the flexion limit
    out = loss(hyper)
    assert out.per_angle[0, 4] == pytest.approx(0.5, abs=1e-9)  # joint 4 = index PIP
    assert out.per_angle[0].sum() == pytest.approx(0.5, abs=1e-9)
    assert out.angle[0] == pytest.approx(0.5 / 15, abs=1e-9)
    # a corner: beyond both flexion and abduction -> Euclidean distance to the corner
    corner = _bent(FLAT, "index", 1, flexion=-0.3, abduction=math.radians(10) + 0.4)
    assert loss(corner).per_angle[0, 4] == pytest.approx(0.5, abs=1e-9)
    # the half-plane form gives the larger of the two edge distances there (a lower bound)
    assert BMCLoss(reduction="none")(corner).per_angle[0, 4] == pytest.approx(0.4, abs=1e-9)


def test_bone_length_term_is_scale_normalised():
    limits = BMCLimits.default()
    loss = BMCLoss(limits, reduction="none")
    d = decompose(FLAT)
    lengths = d.bone_lengths.clone()
    b = sk.bone_index(5, 6)  # index proximal phalanx
    ref = float(lengths[0, sk.bone_index(*sk.REFERENCE_BONE)])
    lengths[0, b] = ref * (limits.bone_length[b, 1] + 0.25)  # 0.25 reference lengths too long
    out = loss(compose(d.replace(bone_lengths=lengths)))
    assert out.per_bone[0, b] == pytest.approx(0.25, abs=1e-9)
    assert out.bone_length[0] == pytest.approx(0.25 / 20, abs=1e-9)


def test_root_term_catches_a_spread_palm():
    d = decompose(FLAT)
    bones = d.bones.clone()
    # swing the little finger's root bone 40 degrees away from the ring finger in the palm plane
    c, s = math.cos(-0.7), math.sin(-0.7)
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    bones[0, sk.ROOT_BONES[4]] = rot @ bones[0, sk.ROOT_BONES[4]]
    out = BMCLoss(reduction="none")(compose(d.replace(bones=bones)))
    assert out.per_root[0, 7] > 0.3  # ring-little angular distance far above its limit
    assert out.root_bone[0] > 0


def test_interval_loss_values():
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 3.0])
    assert interval_loss(x, torch.tensor(0.0), torch.tensor(1.0)).tolist() == [1.0, 0.0, 0.0, 0.0, 2.0]


def test_total_is_weighted_sum_of_terms(hands):
    joints = hands[0][:32] * torch.linspace(0.8, 1.3, 21, dtype=torch.float64)[:, None]  # distorted
    unit = BMCLoss(reduction="none")(joints)
    weighted = BMCLoss(lambda_bl=2.0, lambda_rb=0.5, lambda_a=3.0, reduction="none")(joints)
    assert unit.bone_length.max() > 0 and unit.angle.max() > 0
    assert torch.allclose(weighted.total, 2.0 * unit.bone_length + 0.5 * unit.root_bone + 3.0 * unit.angle)


def test_reductions_agree(hands):
    joints = (hands[0][:40] * 1.0).reshape(4, 10, 21, 3)
    joints = joints + 0.02 * torch.randn(joints.shape, generator=torch.Generator().manual_seed(0), dtype=joints.dtype)
    none = BMCLoss(reduction="none")(joints)
    assert none.total.shape == (4, 10) and none.per_bone.shape == (4, 10, 20)
    assert none.per_root.shape == (4, 10, 8) and none.per_angle.shape == (4, 10, 15)
    mean, total = BMCLoss(reduction="mean")(joints), BMCLoss(reduction="sum")(joints)
    for term in ("total", "bone_length", "root_bone", "angle"):
        assert torch.allclose(getattr(mean, term), getattr(none, term).mean())
        assert torch.allclose(getattr(total, term), getattr(none, term).sum())
    assert mean.per_bone is None
    assert torch.allclose(none.bone_length, none.per_bone.mean(-1))


# ---------------------------------------------------------------- invariances
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.floats(1e-3, 1e3))
def test_metric_and_normalised_poses_give_the_same_loss(seed, scale):
    joints, _ = anatomical_hands(6, seed=seed)
    joints = joints + 0.01 * torch.randn(joints.shape, generator=torch.Generator().manual_seed(seed),
                                         dtype=joints.dtype)  # push some poses outside
    rot = random_rotation(6, torch.Generator().manual_seed(seed + 7))
    loss = BMCLoss(reduction="none")
    a = loss(joints).total
    b = loss(normalize_scale(joints)[0]).total
    c = loss((joints @ rot.transpose(-1, -2)) * scale - 3.0).total
    assert torch.allclose(a, b, atol=1e-9, rtol=1e-7)
    assert torch.allclose(a, c, atol=1e-9, rtol=1e-6)


# ---------------------------------------------------------------- angle distance forms
@given(points=arrays(np.float64, (64, 15, 2), elements=st.floats(-4, 4)))
def test_halfplane_is_a_lower_bound_of_exact_and_zero_inside(points):
    limits = BMCLimits.default()
    verts, normals, offsets = limits.polygon_tensors(torch.float64)
    p = torch.from_numpy(points)
    half = polygon_distance(p, verts, normals, offsets)
    exact = polygon_distance(p, verts, normals, offsets, exact=True)
    assert (half <= exact + 1e-12).all()
    assert ((half == 0) == (exact == 0)).all()


def test_halfplane_equals_exact_off_an_edge_middle(fitted):
    verts, normals, offsets = fitted.polygon_tensors(torch.float64)
    sizes = [len(p) for p in fitted.angle_polygons]
    mids = (verts + torch.roll(verts, -1, dims=1)) / 2  # edge midpoints (15, M, 2)
    for dist in (1e-3, 0.05):
        pts = mids + dist * normals  # straight out of each edge's middle
        for m in range(min(sizes)):
            p = pts[:, m]  # (15, 2)
            half = polygon_distance(p, verts, normals, offsets)
            exact = polygon_distance(p, verts, normals, offsets, exact=True)
            assert torch.allclose(half, exact, atol=1e-12)
            # the point is `dist` from the polygon unless a neighbouring edge is closer
            assert (exact <= dist + 1e-12).all()


def test_exact_distance_matches_brute_force(fitted):
    verts, normals, offsets = fitted.polygon_tensors(torch.float64)
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(50, 15, 2, generator=g, dtype=torch.float64) * 6 - 3
    exact = polygon_distance(pts, verts, normals, offsets, exact=True)
    for j, poly in enumerate(fitted.angle_polygons):
        a, b = poly, np.roll(poly, -1, axis=0)
        for i in range(50):
            x = pts[i, j].numpy()
            t = np.clip(((x - a) * (b - a)).sum(1) / ((b - a) ** 2).sum(1), 0, 1)
            d = np.sqrt(((a + t[:, None] * (b - a) - x) ** 2).sum(1)).min()
            cross = (b - a)[:, 0] * (x - a)[:, 1] - (b - a)[:, 1] * (x - a)[:, 0]
            inside = (cross >= 0).all()
            assert float(exact[i, j]) == pytest.approx(0.0 if inside else d, abs=1e-12)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("distance", ["halfplane", "exact"])
def test_gradcheck_float64(distance):
    joints, _ = anatomical_hands(3, seed=5)
    joints = joints * torch.linspace(0.7, 1.4, 21, dtype=torch.float64)[:, None]  # outside in every term
    loss = BMCLoss(reduction="sum", angle_distance=distance)
    out = loss(joints)
    assert out.bone_length > 0 and out.angle > 0
    j = joints.clone().requires_grad_(True)
    fn = lambda x: tuple(getattr(loss(x), t) for t in ("bone_length", "root_bone", "angle"))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (j,), eps=1e-7, atol=1e-5)


def test_gradient_points_back_inside():
    outside = _bent(FLAT, "index", 1, flexion=-0.4)  # PIP hyperextended
    outside = _bent(outside, "little", 0, abduction=-1.2)  # little finger splayed
    loss = BMCLoss()
    j = outside.clone().requires_grad_(True)
    start = float(loss(outside).total)
    opt = torch.optim.SGD([j], lr=0.002)
    for _ in range(300):
        opt.zero_grad()
        out = loss(j)
        out.total.backward()
        opt.step()
    end = loss(j.detach())
    assert start > 0.05
    assert float(end.total) < 0.02 * start
    d = decompose(j.detach())
    assert float(d.angles[0, 1, 1, 0]) > -0.05  # PIP flexion came back towards its range
    assert float(d.angles[0, 4, 0, 1]) > -1.2 + 0.3


def test_bf16_input_gets_finite_gradients():
    j = _bent(FLAT, "index", 1, flexion=-0.4).to(torch.bfloat16).requires_grad_(True)
    out = BMCLoss()(j)
    assert out.total.dtype == torch.float32
    out.total.backward()
    assert j.grad.dtype == torch.bfloat16 and torch.isfinite(j.grad.float()).all()


def test_module_to_double_keeps_working():
    loss = BMCLoss().double()
    assert loss.interval_low.dtype == torch.float64
    assert float(loss(FLAT).total) == 0.0


# ---------------------------------------------------------------- fuzzing
@given(points=arrays(np.float32, (8, 21, 3), elements=st.floats(-1, 1, width=32)))
def test_arbitrary_point_clouds_give_finite_loss_and_gradients(points):
    j = torch.from_numpy(points).requires_grad_(True)
    out = BMCLoss(reduction="sum")(j)
    out.total.backward()
    assert torch.isfinite(out.total) and torch.isfinite(j.grad).all()


@given(seed=st.integers(0, 2 ** 31 - 1), noise=st.floats(0.0, 0.05), scale=st.sampled_from([1e-4, 1.0, 1e4]))
def test_thousands_of_random_poses_are_nan_free(seed, noise, scale):
    joints, _ = anatomical_hands(64, seed=seed, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    joints = (joints + noise * torch.randn(joints.shape, generator=g)) * scale
    collapse = torch.rand(64, 21, generator=g) < 0.05  # drop some joints onto their parent
    parents = torch.tensor((0,) + sk.PARENTS[1:])
    joints = torch.where(collapse[..., None], joints[:, parents], joints)
    j = joints.requires_grad_(True)
    loss = BMCLoss(reduction="none", angle_distance="exact")(j)
    loss.total.sum().backward()
    assert torch.isfinite(loss.total).all() and torch.isfinite(j.grad).all()


# ---------------------------------------------------------------- bad input
def test_bad_input():
    loss = BMCLoss()
    with pytest.raises(ValueError, match=r"\(2, 20, 3\)"):
        loss(torch.zeros(2, 20, 3))
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full((2, 21, 3), float("nan")))
    with pytest.raises(ValueError, match="floating"):
        loss(torch.zeros(2, 21, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="reduction"):
        BMCLoss(reduction="avg")
    with pytest.raises(ValueError, match="lambda_rb"):
        BMCLoss(lambda_rb=-1)
    with pytest.raises(ValueError, match="angle_distance"):
        BMCLoss(angle_distance="euclid")
    with pytest.raises(TypeError, match="BMCLimits"):
        BMCLoss(limits={"bone_length": []})


@pytest.mark.filterwarnings("ignore::bmclib.limits.DegenerateLimitsWarning")  # the fixture's palm is planar
def test_parity_with_the_papers_formulas_written_out_in_numpy(hands):
    """The 28 interval terms of BMCLoss against the formulas of the paper, as the public loss-only
    reimplementation documents them, written here in plain numpy (not its code): the hinge
    ``max(lo - x, 0) + max(x - hi, 0)`` of (1) each bone's length over the reference bone's,
    (2) the palm curvature ``(e_{i+1} - e_i) . (b_{i+1} - b_i) / |b_{i+1} - b_i|^2`` between
    neighbouring root bones ``b`` (normals ``n_i = b_{i+1} x b_i`` normalised, edge normals ``e``:
    the outer two normals and the normalised means of neighbouring ones), in reference-bone units,
    and (3) the angular distance ``arccos(b_i . b_{i+1} / |b_i| |b_{i+1}|)``. Poses both inside and
    (stretched, spread) outside narrow limits."""
    joints = hands[0][:200].double()
    rng = np.random.default_rng(0)
    joints = joints * torch.as_tensor(rng.uniform(0.8, 1.25, (200, 1, 1)))  # any scale
    limits = BMCLimits.fit(hands[0][200:400].double(), coverage=0.9, interval_coverage=0.6)  # narrow: many outside
    per = BMCLoss(limits, reduction="none", angle_distance="exact")(joints).per_term.numpy()[:, :28]

    j = joints.numpy()
    bones = np.stack([j[:, c] - j[:, p] for p, c in sk.BONES], 1)  # (N, 20, 3)
    length = np.linalg.norm(bones, axis=-1)
    ref = np.linalg.norm(j[:, sk.REFERENCE_BONE[1]] - j[:, sk.REFERENCE_BONE[0]], axis=-1)
    roots = bones[:, list(sk.ROOT_BONES)]  # (N, 5, 3) thumb .. little
    n = np.cross(roots[:, 1:], roots[:, :-1])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    mid = n[:, 1:] + n[:, :-1]
    mid /= np.linalg.norm(mid, axis=-1, keepdims=True)
    e = np.concatenate([n[:, :1], mid, n[:, 3:]], 1)  # (N, 5, 3)
    db, de = roots[:, 1:] - roots[:, :-1], e[:, 1:] - e[:, :-1]
    curvature = (de * db).sum(-1) / (db * db).sum(-1) * ref[:, None]
    cos = (roots[:, :-1] * roots[:, 1:]).sum(-1) / (np.linalg.norm(roots[:, :-1], axis=-1)
                                                   * np.linalg.norm(roots[:, 1:], axis=-1))
    angle = np.arccos(np.clip(cos, -1, 1))

    def hinge(x, iv):
        return np.maximum(iv[:, 0] - x, 0) + np.maximum(x - iv[:, 1], 0)

    ours = {"lengths": per[:, :20], "curvatures": per[:, 20:24], "angular distances": per[:, 24:28]}
    theirs = {"lengths": hinge(length / ref[:, None], limits.bone_length),
              "curvatures": hinge(curvature, limits.root_curvature),
              "angular distances": hinge(angle, limits.root_angle)}
    for name in ours:
        assert (theirs[name] > 0).mean() > 0.05, name  # the comparison sees poses outside, not only zeros
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-9, err_msg=name)


def test_the_loss_and_its_gradient_on_every_device(device):
    """BMCLoss on each device of conftest.DEVICES (the fused path on the CPU, autograd elsewhere)
    equals the CPU autograd path's values and gradients."""
    from bmclib.handmodel import random_poses

    x = random_poses(64, seed=5, spread=1.2).double()
    ref_in = x.clone().requires_grad_(True)
    ref = BMCLoss(reduction="none", fused=False)(ref_in)
    ref.total.sum().backward()
    dev_in = x.to(device).requires_grad_(True)
    out = BMCLoss(reduction="none").to(device)(dev_in)
    out.total.sum().backward()
    assert out.total.device.type == device.type and (ref.total > 0).any()
    assert torch.allclose(out.total.cpu(), ref.total.detach(), rtol=1e-9, atol=1e-12)
    assert torch.allclose(dev_in.grad.cpu(), ref_in.grad, rtol=1e-7, atol=1e-10)


def test_left_hands_are_scored_as_left_with_side_left(hands):
    """A mirrored (left) hand reads implausible to the right-hand loss; with side="left" it scores
    exactly as its right twin, gradients mirrored."""
    joints = hands[0][:8]
    right = joints.clone().requires_grad_(True)
    left = sk.mirror_joints(joints.detach()).requires_grad_(True)
    r = BMCLoss(reduction="none")(right)
    wrong = BMCLoss(reduction="none")(left)
    ok = BMCLoss(reduction="none", side="left")(left)
    w, rr = float(wrong.total.detach().mean()), float(r.total.detach().mean())
    assert w > 0.05 and rr < 0.05 * w
    torch.testing.assert_close(ok.total, r.total, rtol=1e-12, atol=1e-15)
    r.total.sum().backward()
    ok.total.sum().backward()
    torch.testing.assert_close(left.grad, sk.mirror_joints(right.grad), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="side must be 'right' or 'left', got 'both'"):
        BMCLoss(side="both")
