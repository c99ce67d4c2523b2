"""The hand-written forward and backward of the BMC loss (bmclib.fused) against the autograd
reference (BMCLoss(fused=False)) and against finite differences."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bmclib import fused as fused_module
from bmclib.biomech import compose, decompose
from bmclib.fused import bmc_terms
from bmclib.handmodel import random_poses, template_pose
from bmclib.limits import BMCLimits
from bmclib.losses import BMCLoss

from conftest import anatomical_hands

OUTPUTS = ("total", "bone_length", "root_bone", "angle")
PER = ("per_bone", "per_root", "per_angle")


def _families(dtype):
    """Pose families that reach every branch: anatomical hands (inside and outside the limits),
    wild ones (every term active), and the degenerate floors (collapsed bones and root bones,
    a collinear palm, a bone folded straight back, a zero pose, tiny and huge units)."""
    g = torch.Generator().manual_seed(3)
    anat = anatomical_hands(48, seed=5, dtype=torch.float64)[0]
    outside = random_poses(48, seed=4, spread=1.5).double()
    wild = torch.randn(48, 21, 3, generator=g, dtype=torch.float64) * 0.05
    degenerate = random_poses(16, seed=6).double()
    degenerate[0, 6] = degenerate[0, 5]  # index middle phalanx collapsed
    degenerate[1, 1] = degenerate[1, 0]  # thumb root bone collapsed
    degenerate[2, 2:5] = degenerate[2, 1]  # thumb fingers collapsed
    degenerate[3, 7] = degenerate[3, 6] + 1e-9  # nearly collapsed
    degenerate[4, [1, 5, 9, 13, 17]] = 0.0  # collinear root bones, exactly: zero palm normals (nearly collinear
    degenerate[4, [1, 5, 9, 13, 17], 0] = torch.linspace(0.01, 0.05, 5, dtype=torch.float64)  # ones read rounding)
    degenerate[5, 7] = 2 * degenerate[5, 6] - degenerate[5, 7]  # a bone folded straight back (d_z = -1)
    degenerate[6] = 0.0  # a zero pose
    degenerate[7, 9:13] = degenerate[7, 9]  # middle finger collapsed onto its MCP
    degenerate[8] *= 1e-6  # micrometres
    degenerate[9] *= 1e3  # kilometres
    straight = compose(decompose(template_pose(dtype=torch.float64)[None]))  # on the 0 degree bounds
    return {"anatomical": anat, "outside": outside, "wild": wild, "degenerate": degenerate,
            "template": straight.expand(4, -1, -1).clone()}


def _run(joints, fused, reduction, dtype, weights, limits=None, lambdas=(1.0, 1.0, 1.0)):
    x = joints.to(dtype).clone().requires_grad_(True)
    out = BMCLoss(limits, *lambdas, reduction=reduction, fused=fused)(x)
    objective = sum(w * getattr(out, n) for n, w in zip(OUTPUTS, weights[:4])).sum()
    if reduction == "none":
        objective = objective + sum((w * getattr(out, n)).sum() for n, w in zip(PER, weights[4:]))
    objective.backward()
    return out, x.grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_values_and_gradients_equal_the_autograd_reference(dtype, reduction):
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for name, joints in _families(dtype).items():
        n = len(joints)
        g = torch.Generator().manual_seed(n)
        weights = [torch.rand(n, generator=g, dtype=dtype) if reduction == "none" else torch.rand((), generator=g,
                                                                                                 dtype=dtype)
                   for _ in OUTPUTS]
        weights += [torch.rand(n, k, generator=g, dtype=dtype) for k in (20, 8, 15)]
        fused, g_fused = _run(joints, True, reduction, dtype, weights, lambdas=(0.5, 2.0, 3.0))
        ref, g_ref = _run(joints, False, reduction, dtype, weights, lambdas=(0.5, 2.0, 3.0))
        for field in OUTPUTS + (PER if reduction == "none" else ()):
            a, b = getattr(fused, field).detach(), getattr(ref, field).detach()
            assert a.shape == b.shape and a.dtype == b.dtype, (name, field)
            assert torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max().clamp_min(1))), (name, field)
        # gradients: relative to each pose's largest component (collapsed bones reach ~1e4); in
        # float32, wild poses (bones folded nearly straight back) amplify the rounding to ~3e-4
        scale = g_ref.abs().amax((-1, -2), keepdim=True).clamp_min(1.0)
        err = ((g_fused - g_ref).abs() / scale).max()
        assert float(err) < (1e-11 if dtype == torch.float64 else 1e-3), (name, float(err))


def test_fitted_limits_with_longer_polygons(hands):
    limits = BMCLimits.fit(hands[0][:128], coverage=0.9)  # polygons padded to a common length
    assert limits.polygon_tensors()[0].shape[1] > 4
    joints = random_poses(64, seed=8, spread=1.2).double()
    weights = [torch.ones(())] * 4
    a, ga = _run(joints, True, "sum", torch.float64, weights, limits)
    b, gb = _run(joints, False, "sum", torch.float64, weights, limits)
    assert float(a.total.detach()) == pytest.approx(float(b.total.detach()), rel=1e-12) and float(a.angle.detach()) > 0
    assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-12)


def test_gradients_match_finite_differences():
    joints = random_poses(6, seed=9, spread=1.2).double()
    limits = BMCLimits.default()
    loss = BMCLoss(limits, reduction="none")
    consts = loss._numpy_consts(torch.float64)

    def fn(x):
        return bmc_terms(x, consts, (loss.ref_finger, loss.ref_k), "none")

    assert torch.autograd.gradcheck(fn, (joints.requires_grad_(True),), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_batch_shapes_layouts_and_half_precision():
    joints = random_poses(24, seed=10, spread=1.0)
    for x in (joints.reshape(2, 3, 4, 21, 3), joints[0], joints.transpose(0, 1).contiguous().transpose(0, 1),
              joints.half(), joints.bfloat16()):
        a = BMCLoss(reduction="none")(x)
        b = BMCLoss(reduction="none", fused=False)(x)
        assert a.total.shape == b.total.shape == x.shape[:-2] and a.per_angle.shape == x.shape[:-2] + (15,)
        assert a.total.dtype == b.total.dtype
        assert torch.allclose(a.total, b.total, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numpy_and_torch_kernels_agree_on_both_sides_of_the_switch(monkeypatch, dtype):
    """The fused path sends arrays of at least ``_BIG`` elements through torch's kernels and
    smaller ones through numpy. Forced each way, on a batch below and one above the switch, the
    values and gradients are the same and equal the autograd path's."""
    fams = _families(torch.float64)
    weights = (1.0, 0.5, 2.0, 1.5)
    for n in (24, 160):  # (3, 3, 5, n) frames: 1,080 and 7,200 elements, either side of 4,096
        joints = torch.cat([fams["outside"][:12], fams["wild"][:12], fams["degenerate"], fams["anatomical"],
                            fams["outside"][12:], fams["wild"][12:]])[:n]
        assert len(joints) == n
        ref, ref_grad = _run(joints, False, "mean", dtype, weights)
        got = {}
        for big in (0, 10**9):  # 0: every array through torch; 1e9: every array through numpy
            monkeypatch.setattr(fused_module, "_BIG", big)
            got[big] = _run(joints, True, "mean", dtype, weights)
        tol = dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
        for big, (out, grad) in got.items():
            assert type(out.total.grad_fn).__name__ == "_FusedBMCBackward"
            for name in OUTPUTS:
                assert torch.allclose(getattr(out, name), getattr(ref, name), **tol), (n, big, name)
            scale = ref_grad.abs().max()
            assert scale > 0  # poses outside the limits: a gradient to compare
            assert torch.allclose(grad / scale, ref_grad / scale, **tol), (n, big)
        a, b = got[0], got[10**9]
        assert torch.allclose(a[1], b[1], **tol) and torch.allclose(a[0].total, b[0].total, **tol)


def test_the_fused_path_is_taken_where_it_applies():
    assert BMCLoss().fused and not BMCLoss(fused=False).fused
    assert not BMCLoss(angle_distance="exact").fused  # exact distances: autograd
    x = random_poses(4).requires_grad_(True)
    assert type(BMCLoss()(x).total.grad_fn).__name__ == "_FusedBMCBackward"
    assert type(BMCLoss(fused=False)(x).total.grad_fn).__name__ != "_FusedBMCBackward"


def test_bad_input_and_empty_batches():
    bad = random_poses(5)
    bad[3, 7, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf.*flat index \[3\]"):
        BMCLoss()(bad)
    with pytest.raises(ValueError, match="expected shape"):
        BMCLoss()(torch.zeros(2, 20, 3))
    empty = torch.zeros(0, 21, 3)
    assert BMCLoss(reduction="none")(empty).per_term.shape == (0, 43)
    assert BMCLoss(reduction="sum")(empty).total == 0


def test_double_backward_needs_the_reference_path():
    x = random_poses(3, spread=1.2).double().requires_grad_(True)
    g, = torch.autograd.grad(BMCLoss(fused=False)(x).total, x, create_graph=True)
    assert g.requires_grad  # the autograd path supports it
    g, = torch.autograd.grad(BMCLoss()(x).total, x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        torch.autograd.grad(g.sum(), x)


def test_torch_func_takes_the_autograd_path():
    x = random_poses(3, spread=1.2).double()
    loss = BMCLoss(reduction="sum")
    g = torch.func.grad(lambda j: loss(j).total)(x)
    x.requires_grad_(True)
    loss(x).total.backward()
    assert torch.allclose(g, x.grad, rtol=1e-10, atol=1e-12) and float(g.abs().max()) > 0


def test_moving_the_module_recasts_its_constants():
    loss = BMCLoss(reduction="sum")
    x = random_poses(8, spread=1.2)
    a = loss(x).total
    b = loss.double()(x.double()).total
    assert a.dtype == torch.float32 and b.dtype == torch.float64
    assert float(a) == pytest.approx(float(b), rel=1e-5)


@given(st.integers(0, 2**31 - 1), st.floats(0.0, 3.0), st.floats(0.0, 0.05), st.floats(1e-3, 1e3))
def test_any_pose_has_the_reference_gradient(seed, spread, noise, units):
    """Random poses from near-anatomical to wild, in any units. (Not arbitrary arrays: those hit the
    loss's singular points, e.g. exactly collinear root bones, where |r_f+1 x r_f| has no derivative
    and each implementation returns whichever one-sided value its rounding picks.)"""
    g = torch.Generator().manual_seed(seed)
    x = (random_poses(4, seed=seed, spread=spread).double() + noise * torch.randn(4, 21, 3, generator=g,
                                                                                 dtype=torch.float64)) * units
    weights = [torch.ones(())] * 4
    a, ga = _run(x, True, "sum", torch.float64, weights)
    b, gb = _run(x, False, "sum", torch.float64, weights)
    assert float(a.total.detach()) == pytest.approx(float(b.total.detach()), rel=1e-9, abs=1e-12)
    scale = gb.abs().amax((-1, -2), keepdim=True).clamp_min(1.0 / units)
    assert float(((ga - gb).abs() / scale).max()) < 1e-8
