import pytest
import torch

from bmclib.camera import from_2p5d, pixel_rays, project, root_depth, to_2p5d
from bmclib.data.synth import generate_batch
from bmclib.model import HandPoseNet, ModelConfig, ResNet, load_backbone_weights, soft_argmax


@pytest.fixture(scope="module")
def hands():
    return generate_batch("target", 16, 64, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- camera
def test_2p5d_round_trip_and_closed_form_root(hands):
    uv, z_rel, Z, s = to_2p5d(hands.xyz, hands.K)
    assert torch.allclose(uv, hands.uv)
    assert z_rel[:, 0].abs().max() == 0
    assert torch.allclose(root_depth(uv, z_rel, hands.K), Z, rtol=1e-10)
    assert torch.allclose(from_2p5d(uv, z_rel, Z, hands.K) * s[:, None, None], hands.xyz, atol=1e-12)


def test_root_depth_guards_degenerate_input():
    K = torch.eye(3, dtype=torch.float64)[None]
    uv = torch.zeros(1, 21, 2, dtype=torch.float64)  # every joint on one pixel: a = 0
    z = torch.zeros(1, 21, dtype=torch.float64)
    assert torch.isfinite(root_depth(uv, z, K)).all()


def test_project_and_rays_agree():
    K = torch.tensor([[[400.0, 0, 60.0], [0, 410.0, 70.0], [0, 0, 1]]])
    u = torch.tensor([[5.0, 100.0]])
    v = torch.tensor([[7.0, 30.0]])
    rays = pixel_rays(K, u, v)  # (1, 2, 3)
    back = project(rays * 2.0, K)
    assert torch.allclose(back[0], torch.tensor([[5.0, 7.0], [100.0, 30.0]]), atol=1e-4)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        project(torch.zeros(2, 2), K[0])


# ---------------------------------------------------------------- network
def test_soft_argmax_reads_back_a_delta():
    h = torch.full((1, 21, 16, 16), -1e4)
    h[0, 3, 5, 11] = 0.0  # row 5, column 11
    uv, prob = soft_argmax(h, torch.ones(21), stride=4.0)
    assert uv[0, 3].tolist() == pytest.approx([11 * 4 + 1.5, 5 * 4 + 1.5])
    assert float(prob[0, 3].sum()) == pytest.approx(1.0)
    # stride 1: the cell index is the pixel
    uv1, _ = soft_argmax(h, torch.ones(21), stride=1.0)
    assert uv1[0, 3].tolist() == pytest.approx([11.0, 5.0])


@pytest.mark.parametrize("name, params", [("resnet18", 11_176_512), ("resnet50", 23_508_032)])
def test_resnet_matches_torchvision_layout(name, params):
    """torchvision's ResNet without its classifier (fc): same parameter count and names."""
    net = ResNet(name)
    assert sum(p.numel() for p in net.parameters()) == params
    keys = set(net.state_dict())
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
              "layer2.0.downsample.1.bias", "layer4.1.bn2.weight"):
        assert k in keys, k
    if name == "resnet50":
        assert "layer4.2.conv3.weight" in keys and "layer3.5.bn3.running_var" in keys


def test_load_backbone_weights():
    a, b = ResNet("resnet18"), ResNet("resnet18")
    sd = {**a.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    assert sorted(load_backbone_weights(b, sd)) == ["fc.bias", "fc.weight"]
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    with pytest.raises(ValueError, match="shape mismatch"):
        load_backbone_weights(ResNet("resnet18", width=0.5), sd)


def test_network_outputs(hands):
    net = HandPoseNet(ModelConfig(backbone="resnet18", width=0.125, deconv=2, head_channels=32)).eval()
    imgs = hands.images.permute(0, 3, 1, 2).float() / 255
    out = net(imgs, hands.K.float(), hands.scale.float())
    assert out.uv.shape == (16, 21, 2) and out.z_rel.shape == (16, 21) and out.root.shape == (16,)
    assert out.heatmaps.shape == (16, 21, 8, 8)
    assert torch.allclose(out.z_rel[:, 0], torch.zeros(16))
    assert (out.uv >= 0).all() and (out.uv <= 63).all()  # a soft-argmax stays inside the image
    assert torch.allclose(out.joints, out.joints_norm * hands.scale.float()[:, None, None])
    # at init the refinement MLP adds nothing: the root is the (clamped) closed form
    assert torch.allclose(out.root, out.root_closed_form)
    assert torch.allclose(project(out.joints_norm, hands.K.float()), out.uv, atol=1e-3)
    with pytest.raises(ValueError, match=r"\(16, 64, 64, 3\)"):
        net(hands.images.float(), hands.K.float())
    with pytest.raises(ValueError, match="backbone"):
        ResNet("resnet19")


def test_skip_decoder_keeps_backbone_names_and_gives_stride_4_heatmaps(hands):
    net = HandPoseNet(ModelConfig(backbone="resnet18", width=0.125, deconv=3, head_channels=32, decoder="skip")).eval()
    # the backbone is the same module (torchvision's names), the decoder sits beside it
    assert set(net.backbone.state_dict()) == set(ResNet("resnet18", width=0.125).state_dict())
    imgs = hands.images.permute(0, 3, 1, 2).float() / 255
    out = net(imgs, hands.K.float())
    assert out.heatmaps.shape == (16, 21, 16, 16)  # 64 px / 4
    assert torch.allclose(out.heatmaps.sum((2, 3)), torch.ones(16, 21), atol=1e-5)
    # the early stages reach the heatmaps: a gradient flows from uv into layer1 through the lateral path
    net.zero_grad()
    out.uv.sum().backward()
    assert net.upsample.lateral[2].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="decoder"):
        HandPoseNet(ModelConfig(backbone="resnet18", width=0.125, decoder="unet"))
    with pytest.raises(ValueError, match="0-3 times"):
        HandPoseNet(ModelConfig(backbone="resnet18", width=0.125, deconv=4, decoder="skip"))


def test_heatmap_loss_is_smallest_at_the_label():
    from bmclib.train import gaussian_heatmaps, heatmap_loss

    size, cells = 64, 16
    uv = torch.tensor([[[21.5, 37.5]]])  # the centre of cell (row 9, column 5) at stride 4
    g = gaussian_heatmaps(uv, size, cells, cells, sigma=1.0)
    assert float(g.sum()) == pytest.approx(1.0)
    assert divmod(int(g.flatten().argmax()), cells) == (9, 5)
    # cross-entropy of a softmax against the target: lowest when the softmax is the target itself,
    # higher for the same Gaussian one cell off, and far higher for a uniform map
    at = heatmap_loss(g, uv, size, 1.0)
    off = heatmap_loss(torch.roll(g, 1, dims=-1), uv, size, 1.0)
    flat = heatmap_loss(torch.full_like(g, 1 / cells ** 2), uv, size, 1.0)
    assert float(at) < float(off) < float(flat)
