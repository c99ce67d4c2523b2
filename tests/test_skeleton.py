import numpy as np
import pytest
import torch

from bmclib import skeleton as sk

# RHD's documented per-hand order: wrist, then each finger tip -> MCP (thumb tip -> CMC).
RHD_NAMES = ["wrist"] + [f"{f}_{k}" for f, kinds in zip(
    sk.FINGER_NAMES, [("tip", "ip", "mcp", "cmc")] + [("tip", "dip", "pip", "mcp")] * 4) for k in kinds]
# MANO's 16 joints (wrist; index, middle, little, ring, thumb; proximal -> distal), then the tips
# thumb, index, middle, ring, little, as HO-3D stores them.
MANO_NAMES = (["wrist"]
              + [f"{f}_{k}" for f in ("index", "middle", "little", "ring") for k in ("mcp", "pip", "dip")]
              + ["thumb_cmc", "thumb_mcp", "thumb_ip"]
              + [f"{f}_tip" for f in ("thumb", "index", "middle", "ring", "little")])


def test_tables_are_consistent():
    assert len(sk.JOINT_NAMES) == len(set(sk.JOINT_NAMES)) == 21
    assert len(sk.BONES) == 20
    for b, (p, c) in enumerate(sk.BONES):
        assert sk.PARENTS[c] == p and sk.bone_index(p, c) == b
    assert [sk.JOINT_NAMES[j] for j in sk.ROOT_BONE_JOINTS] == [
        "thumb_cmc", "index_mcp", "middle_mcp", "ring_mcp", "little_mcp"]
    assert sk.ANGLE_JOINT_NAMES[:3] == ("thumb_cmc", "thumb_mcp", "thumb_ip")
    assert sk.ANGLE_JOINT_NAMES[3:6] == ("index_mcp", "index_pip", "index_dip")
    assert sk.REFERENCE_BONE == (9, 10)


def test_bone_index_rejects_non_bones():
    with pytest.raises(ValueError, match=r"\(0, 6\)"):
        sk.bone_index(0, 6)


def test_rhd_order_matches_names():
    names = np.array(sk.JOINT_NAMES)[:, None]
    assert sk.to_rhd(names)[:, 0].tolist() == RHD_NAMES
    assert sk.from_rhd(np.array(RHD_NAMES)[:, None])[:, 0].tolist() == list(sk.JOINT_NAMES)


def test_ho3d_order_matches_names():
    assert sk.from_ho3d(np.array(MANO_NAMES)[:, None])[:, 0].tolist() == list(sk.JOINT_NAMES)


@pytest.mark.parametrize("to, back", [(sk.to_rhd, sk.from_rhd), (sk.to_ho3d, sk.from_ho3d)])
def test_converters_round_trip_numpy_and_torch(to, back):
    x = np.random.default_rng(0).normal(size=(4, 21, 3))
    assert np.array_equal(back(to(x)), x)
    t = torch.from_numpy(x)
    assert torch.equal(back(to(t)), t)
    assert np.array_equal(to(t).numpy(), to(x))


def test_rhd_hand_picks_the_side():
    x = np.arange(42 * 3, dtype=float).reshape(42, 3)
    right = sk.rhd_hand(x, "right")
    left = sk.rhd_hand(x, "left")
    assert np.array_equal(right[0], x[21]) and np.array_equal(left[0], x[0])
    assert np.array_equal(right[1], x[21 + 4])  # thumb CMC is RHD's 4th after the wrist
    with pytest.raises(ValueError, match="side"):
        sk.rhd_hand(x, "both")
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        sk.rhd_hand(x[:21], "left")


def test_mediapipe_is_identity_and_checked():
    x = torch.randn(2, 21, 3)
    assert sk.from_mediapipe(x) is x
    with pytest.raises(ValueError, match=r"\(2, 20, 3\)"):
        sk.from_mediapipe(torch.randn(2, 20, 3))


def test_mirroring():
    j = torch.randn(5, 21, 3)
    m = sk.mirror_joints(j)
    assert torch.equal(m[..., 0], -j[..., 0]) and torch.equal(m[..., 1:], j[..., 1:])
    assert torch.equal(sk.mirror_joints(m), j)
    uv = np.array([[0.0, 5.0], [223.0, 7.0], [100.5, 1.0]])
    assert sk.mirror_uv(uv, 224).tolist() == [[223.0, 5.0], [0.0, 7.0], [122.5, 1.0]]
    assert uv[0, 0] == 0.0  # input untouched
    with pytest.raises(ValueError, match="coordinates"):
        sk.mirror_joints(torch.zeros(21, 2))


def test_mirrored_projection_stays_consistent():
    """Flipping an image, u -> W-1-u, and cx -> W-1-cx keep projection of mirrored 3D consistent."""
    w = 224
    k = np.array([[500.0, 0, 100.0], [0, 500.0, 112.0], [0, 0, 1]])
    xyz = np.random.default_rng(1).normal(size=(21, 3)) * 0.05 + [0, 0, 0.6]
    uv = (xyz @ k.T)[:, :2] / xyz[:, 2:]
    k_m = k.copy()
    k_m[0, 2] = w - 1 - k[0, 2]
    xyz_m = sk.mirror_joints(xyz)
    uv_m = (xyz_m @ k_m.T)[:, :2] / xyz_m[:, 2:]
    assert np.allclose(uv_m, sk.mirror_uv(uv, w))
