import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bmclib import skeleton as sk
from bmclib.biomech import compose, compose_parts, decompose, normalize_scale
from bmclib.handmodel import template_pose

from conftest import anatomical_hands, random_rotation

# right hand, palm towards the camera (-z), fingers up (-y); a planar palm, so that the angle
# conventions below can be checked by rotating about axes of the palm plane
FLAT = template_pose(dtype=torch.float64, volar_offset=torch.zeros(5))
VOLAR = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)


def _rotate_about(points, centre, axis, angle):
    """Rodrigues rotation of points (K, 3) about an axis through centre."""
    axis = axis / axis.norm()
    p = points - centre
    c, s = math.cos(angle), math.sin(angle)
    rot = p * c + torch.linalg.cross(axis.expand_as(p), p, dim=-1) * s + axis * (p @ axis)[:, None] * (1 - c)
    return rot + centre


# ---------------------------------------------------------------- hand-computed cases
def test_flat_hand_has_zero_angles():
    d = decompose(FLAT)
    assert d.angles.shape == (5, 3, 2)
    assert d.angles.abs().max() < 1e-12
    assert d.root_curvatures.abs().max() < 1e-12  # a flat palm has no curvature


def test_pip_bent_90_degrees_towards_palm_is_plus_half_pi():
    j = FLAT.clone()
    pip, dip, tip = 6, 7, 8  # index finger
    l1, l2 = (j[dip] - j[pip]).norm(), (j[tip] - j[dip]).norm()
    j[dip] = j[pip] + l1 * VOLAR  # bent straight towards the palm side
    j[tip] = j[dip] + l2 * VOLAR
    d = decompose(j)
    assert d.angles[1, 1, 0] == pytest.approx(math.pi / 2, abs=1e-12)  # PIP flexion
    assert d.angles[1, 1, 1] == pytest.approx(0.0, abs=1e-12)
    assert d.angles[1, 2].abs().max() < 1e-12  # DIP straight relative to the middle phalanx
    others = torch.ones(5, 3, dtype=torch.bool)
    others[1, 1:] = False
    assert d.angles[others].abs().max() < 1e-12


def _flex_axis(j, parent, joint):
    """Axis about which a rotation by +angle flexes the bone after ``joint`` towards the palm."""
    u = j[joint] - j[parent]
    return torch.linalg.cross(u / u.norm(), VOLAR, dim=-1)


def test_pip_bent_backwards_is_negative_flexion():
    j = FLAT.clone()
    j[7:9] = _rotate_about(j[7:9], j[6], _flex_axis(FLAT, 5, 6), -0.3)
    assert j[7, 2] > 0  # moved away from the palm (dorsal)
    d = decompose(j)
    assert d.angles[1, 1].tolist() == pytest.approx([-0.3, 0.0], abs=1e-12)


@pytest.mark.parametrize("finger", [1, 2, 3, 4])
def test_abduction_towards_thumb_is_positive(finger):
    j = FLAT.clone()
    mcp = sk.FINGER_JOINTS[finger][0]
    chain = list(sk.FINGER_JOINTS[finger][1:])
    # rotate the whole finger about the palm normal so that it moves towards the thumb (+x)
    j[chain] = _rotate_about(j[chain], j[mcp], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), 0.2)
    assert (j[chain[-1], 0] > FLAT[chain[-1], 0])  # moved radially
    d = decompose(j)
    assert d.angles[finger, 0, 1] == pytest.approx(0.2, abs=1e-12)
    assert d.angles[finger, 0, 0] == pytest.approx(0.0, abs=1e-12)
    assert d.angles[finger, 1:].abs().max() < 1e-12


def test_tiny_angles_are_exact():
    """arccos of eps-clamped cosines loses ~1e-4 rad near straight joints; atan2 does not."""
    for angle in (1e-3, 1e-6, 1e-9):
        j = FLAT.clone()
        j[7:9] = _rotate_about(FLAT[7:9], FLAT[6], _flex_axis(FLAT, 5, 6), angle)
        got = float(decompose(j).angles[1, 1, 0])
        assert abs(got - angle) < 1e-14 + 1e-9 * angle, (angle, got)


def test_root_angles_of_template_match_palm_geometry():
    d = decompose(FLAT)
    r = d.root_bones
    for f in range(4):
        cos = float(r[f] @ r[f + 1] / (r[f].norm() * r[f + 1].norm()))
        assert float(d.root_angles[f]) == pytest.approx(math.acos(cos), abs=1e-9)


# ---------------------------------------------------------------- round trips
def test_round_trip_float64(hands):
    joints, angles = hands
    d = decompose(joints)
    assert torch.allclose(d.angles, angles, atol=1e-9, rtol=0)
    assert (compose(d) - joints).abs().max() < 1e-9


def test_round_trip_float32(hands):
    joints = hands[0].float()
    back = compose(decompose(joints))
    assert back.dtype == torch.float32
    rel = (back - joints).norm(dim=-1) / (joints - joints[:, :1]).norm(dim=-1).amax(-1, keepdim=True)
    assert rel.max() < 1e-5


def test_compose_follows_edited_angles_and_lengths():
    d = decompose(FLAT)
    bent = d.with_angle("middle", 0, flexion=0.7, abduction=-0.1)
    j = compose(bent)
    d2 = decompose(j)
    assert d2.angles[2, 0].tolist() == pytest.approx([0.7, -0.1], abs=1e-12)
    assert torch.allclose(j[:10], FLAT[:10])  # other fingers untouched
    lengths = d.bone_lengths.clone()
    lengths[sk.bone_index(9, 10)] *= 1.5
    lengths[sk.bone_index(0, 5)] *= 0.8  # a root bone too
    d3 = decompose(compose(d.replace(bone_lengths=lengths)))
    assert torch.allclose(d3.bone_lengths, lengths, atol=1e-12)
    assert d3.angles.abs().max() < 1e-12


def test_with_angle_rejects_bad_joint():
    with pytest.raises(ValueError, match="finger"):
        decompose(FLAT).with_angle(7, 0, flexion=0.1)


@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
def test_batch_shapes(batch):
    joints = anatomical_hands(int(np.prod(batch)) if batch else 1, seed=3)[0].reshape(batch + (21, 3))
    d = decompose(joints)
    assert d.angles.shape == batch + (5, 3, 2)
    assert d.bones.shape == batch + (20, 3)
    assert d.bone_lengths.shape == batch + (20,)
    assert d.root_angles.shape == batch + (4,)
    assert d.root_curvatures.shape == batch + (4,)
    assert d.frames.shape == batch + (5, 3, 3, 3)
    assert d.palm_normals.shape == batch + (4, 3)
    assert compose(d).shape == batch + (21, 3)


def test_frames_are_orthonormal_and_bones_match_joints(hands):
    joints = hands[0][:16]
    d = decompose(joints)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(d.frames @ d.frames.transpose(-1, -2), eye.expand_as(d.frames), atol=1e-9)
    assert torch.allclose(torch.linalg.det(d.frames), torch.ones(16, 5, 3, dtype=torch.float64), atol=1e-9)
    for b, (p, c) in enumerate(sk.BONES):
        assert torch.allclose(d.bones[:, b], joints[:, c] - joints[:, p])


def test_low_precision_is_promoted():
    d = decompose(FLAT.to(torch.bfloat16))
    assert d.angles.dtype == torch.float32
    assert torch.isfinite(d.angles).all()


# ---------------------------------------------------------------- invariances (property tests)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.floats(1e-3, 1e3), shift=st.floats(-10, 10))
def test_rigid_and_scale_invariance(seed, scale, shift):
    joints, _ = anatomical_hands(8, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    rot = random_rotation(8, g)
    moved = (joints @ rot.transpose(-1, -2)) * scale + shift
    a, b = decompose(joints), decompose(moved)
    assert torch.allclose(a.angles, b.angles, atol=1e-8)
    assert torch.allclose(a.root_angles, b.root_angles, atol=1e-8)
    assert torch.allclose(a.bone_lengths * scale, b.bone_lengths, rtol=1e-8)
    assert torch.allclose(a.root_curvatures / scale, b.root_curvatures, rtol=1e-6, atol=1e-6 / scale)


@given(seed=st.integers(0, 2 ** 31 - 1))
def test_mirrored_left_hand_decomposes_like_the_right(seed):
    right, _ = anatomical_hands(4, seed=seed)
    g = torch.Generator().manual_seed(seed)
    left = sk.mirror_joints(right) @ random_rotation(4, g).transpose(-1, -2)  # a left hand seen anywhere
    back = sk.mirror_joints(left)  # what a loader does
    assert torch.allclose(decompose(back).angles, decompose(right).angles, atol=1e-9)
    # without mirroring, the right-hand convention misreads a left hand
    assert not torch.allclose(decompose(left).angles, decompose(right).angles, atol=1e-3)


def test_normalize_scale(hands):
    joints = hands[0]
    norm, scale = normalize_scale(joints)
    assert torch.allclose((norm[:, 10] - norm[:, 9]).norm(dim=-1), torch.ones(len(joints), dtype=torch.float64))
    assert torch.allclose(norm[:, 0], torch.zeros(len(joints), 3, dtype=torch.float64))
    assert torch.allclose(norm * scale[:, None, None] + joints[:, :1], joints)


# ---------------------------------------------------------------- degenerate input
def _degenerate_poses():
    zero = torch.zeros(21, 3)
    zero_bone = FLAT.float().clone()
    zero_bone[7] = zero_bone[6]  # index PIP->DIP has length 0
    collinear = FLAT.float().clone()
    collinear[[1, 5, 9, 13, 17]] = torch.tensor([0.0, -0.08, 0.0]) * torch.tensor([0.5, 1.0, 1.1, 0.9, 0.8])[:, None]
    coincident = FLAT.float().clone()
    coincident[13] = coincident[9]  # two root bones on top of each other
    zero_root = FLAT.float().clone()
    zero_root[5:9] -= zero_root[5].clone()  # index MCP on the wrist
    return {"zero": zero, "zero_bone": zero_bone, "collinear_roots": collinear, "coincident_roots": coincident,
            "zero_root_bone": zero_root, "straight": FLAT.float(), "huge": FLAT.float() * 1e6,
            "tiny": FLAT.float() * 1e-6}


@pytest.mark.parametrize("name", list(_degenerate_poses()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_values_and_gradients_are_finite(name, dtype):
    j = _degenerate_poses()[name].to(dtype).requires_grad_(True)
    d = decompose(j)
    for field in ("angles", "root_angles", "root_curvatures", "bone_lengths", "frames"):
        assert torch.isfinite(getattr(d, field)).all(), field
    (d.angles.sum() + d.root_angles.sum() + d.root_curvatures.sum() + d.bone_lengths.sum()).backward()
    assert torch.isfinite(j.grad).all()
    back = compose(d)
    assert torch.isfinite(back).all()


def test_gradients_are_modest_for_straight_fingers():
    """At a straight finger the normalised-axis rotation has a 1/eps gradient; ours is O(1)."""
    for dtype in (torch.float32, torch.float64):
        j, _ = normalize_scale(FLAT.to(dtype))
        j = j.clone().requires_grad_(True)
        decompose(j).angles.sum().backward()
        assert torch.isfinite(j.grad).all()
        assert j.grad.abs().max() < 50


def test_scale_invariance_at_extreme_scales():
    ref = decompose(FLAT).angles
    for s in (1e-9, 1e9):
        assert torch.allclose(decompose(FLAT * s).angles, ref, atol=1e-9)
    for s in (1e-6, 1e6):
        assert torch.allclose(decompose((FLAT * s).float()).angles, ref.float(), atol=1e-5)


def test_gradcheck_float64(hands):
    joints = hands[0][:2].clone().requires_grad_(True)

    def f(j):
        d = decompose(j)
        return d.angles, d.root_angles, d.root_curvatures, d.bone_lengths

    assert torch.autograd.gradcheck(f, (joints,), eps=1e-6, atol=1e-5)


def test_gradcheck_compose_parts():
    d = decompose(FLAT[None])
    roots = d.root_bones.clone().requires_grad_(True)
    lengths = d.bone_lengths.unflatten(-1, (5, 4))[..., 1:].clone().requires_grad_(True)
    angles = (d.angles + 0.2).requires_grad_(True)
    assert torch.autograd.gradcheck(compose_parts, (roots, lengths, angles), eps=1e-6, atol=1e-5)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, match", [
    (torch.zeros(20, 3), r"\(20, 3\)"),
    (torch.zeros(4, 21, 2), r"\(4, 21, 2\)"),
    (torch.zeros(21), r"\(21,\)"),
    (torch.zeros(21, 3, dtype=torch.int64), "floating point"),
])
def test_bad_input_raises_with_shape(bad, match):
    with pytest.raises(ValueError, match=match):
        decompose(bad)


def test_nan_input_raises():
    j = FLAT.clone()[None].repeat(3, 1, 1)
    j[1, 4, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN.*\(3, 21, 3\).*\[1\]"):
        decompose(j)


def test_non_tensor_raises_type_error():
    with pytest.raises(TypeError, match="ndarray"):
        decompose(np.zeros((21, 3)))


def test_compose_parts_bad_shapes():
    d = decompose(FLAT)
    with pytest.raises(ValueError, match="angles"):
        compose_parts(d.root_bones, torch.ones(5, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="root_bones"):
        compose_parts(torch.zeros(4, 3), torch.ones(5, 3), torch.zeros(5, 3, 2))


def test_decompose_and_compose_on_every_device(device):
    """The round trip and the angles on each device of conftest.DEVICES, equal to the CPU's."""
    joints, _ = anatomical_hands(32, seed=11)
    d_cpu = decompose(joints)
    d = decompose(joints.to(device))
    assert d.angles.device.type == device.type
    assert torch.allclose(d.angles.cpu(), d_cpu.angles, atol=1e-10)
    assert torch.allclose(compose(d).cpu(), joints, atol=1e-10)
