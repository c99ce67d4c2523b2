"""The camera model (bmclib.camera): projection, 2.5D and the closed-form root depth, on every device."""
import pytest
import torch

from bmclib import skeleton as sk
from bmclib.camera import from_2p5d, normalised_coords, pixel_rays, project, root_depth, to_2p5d

from conftest import hands_on


def test_projection_is_the_pinhole_model(device):
    xyz, K = hands_on(8, device)
    uv = project(xyz, K)
    assert uv.device.type == device.type and uv.shape == (8, 21, 2)
    expected_u = K[:, None, 0, 0] * xyz[..., 0] / xyz[..., 2] + K[:, None, 0, 2]
    expected_v = K[:, None, 1, 1] * xyz[..., 1] / xyz[..., 2] + K[:, None, 1, 2]
    assert torch.allclose(uv, torch.stack([expected_u, expected_v], -1), atol=1e-9)
    # normalised coordinates undo K; pixel rays point at the joints
    xy = normalised_coords(uv, K)
    assert torch.allclose(xy, xyz[..., :2] / xyz[..., 2:], atol=1e-12)
    rays = pixel_rays(K, uv[..., 0], uv[..., 1])
    assert torch.allclose(rays, xyz / xyz.norm(dim=-1, keepdim=True), atol=1e-12)


def test_2p5d_round_trip_and_the_closed_form_root(device):
    xyz, K = hands_on(16, device, seed=1)
    uv, z_rel, Z, s = to_2p5d(xyz, K)
    n, m = sk.REFERENCE_BONE
    assert torch.allclose(s, (xyz[:, n] - xyz[:, m]).norm(dim=-1))
    # from the true 2.5D, the closed form finds the true normalised root depth (the larger root)
    assert torch.allclose(root_depth(uv, z_rel, K), Z, rtol=1e-9)
    back = from_2p5d(uv, z_rel, Z, K) * s[:, None, None]
    assert torch.allclose(back, xyz, atol=1e-12)
    big, small = root_depth(uv, z_rel, K, both=True)
    assert (big >= small).all()
    # asked for another length, the root found gives the reference bone exactly that length
    Z2 = root_depth(uv, z_rel, K, length=2.0)
    pose = from_2p5d(uv, z_rel, Z2, K)
    assert torch.allclose((pose[:, n] - pose[:, m]).norm(dim=-1), torch.full_like(Z2, 2.0), rtol=1e-9)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"xyz: expected \(\.\.\., J, 3\)"):
        project(torch.zeros(2, 21, 2), torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match=r"K: expected \(\.\.\., 3, 3\)"):
        project(torch.zeros(2, 21, 3), torch.eye(4).expand(2, 4, 4))
