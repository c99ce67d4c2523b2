import json
import math

import numpy as np
import pytest
import torch

from bmclib.biomech import compose_parts, decompose
from bmclib.camera import project
from bmclib.data.cache import PreparedCache
from bmclib.data.freihand import freihand_to_cache, read_split
from bmclib.data.render import Scene, backgrounds, render
from bmclib.data.synth import (generate_batch, generate_dataset, render_hands, rom_bounds, sample_angles,
                               sample_orientations)
from bmclib.handmodel import template_pose
from bmclib.limits import BMCLimits


@pytest.fixture(scope="module", params=["source", "target"])
def batch(request):
    return request.param, generate_batch(request.param, 48, 128, torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "target"
    summary = generate_dataset(str(out), "target", 80, 24, seed=5, size=64, progress=False)
    return out, summary


# ---------------------------------------------------------------- poses
def test_broad_angles_cover_the_ranges():
    a = sample_angles(4000, "broad", torch.Generator().manual_seed(0))
    lo, hi = rom_bounds()
    assert (a >= lo - 1e-12).all() and (a <= hi + 1e-12).all()
    assert torch.allclose(a.amin(0), lo, atol=0.05) and torch.allclose(a.amax(0), hi, atol=0.05)


def test_natural_angles_follow_the_synergies():
    a = sample_angles(4000, "natural", torch.Generator().manual_seed(0))
    lo, hi = rom_bounds()
    assert (a >= lo - 1e-12).all() and (a <= hi + 1e-12).all()
    pip, dip, mcp = a[:, 1:, 1, 0], a[:, 1:, 2, 0], a[:, 1:, 0, 0]
    ratio = (dip * pip).sum() / (pip * pip).sum()  # least-squares DIP ~ k PIP
    assert 0.55 < float(ratio) < 0.75
    assert np.corrcoef(mcp.flatten(), pip.flatten())[0, 1] > 0.7  # MCP and PIP flex together
    assert (a[:, 2:, :, 0].mean() > a[:, 1, :, 0].mean())  # ulnar fingers flex more than the index
    with pytest.raises(ValueError, match="pose mode"):
        sample_angles(3, "wild", torch.Generator())


def test_facing_orientations_show_palm_or_back():
    rot = sample_orientations(2000, "facing", torch.Generator().manual_seed(0))
    normal = rot @ torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)  # template palm normal
    assert (normal[:, 2].abs() > math.cos(math.radians(60))).float().mean() > 0.9
    back = (normal[:, 2] > 0).float().mean()
    assert 0.3 < back < 0.5
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2000, 3, 3), atol=1e-9)
    anyrot = sample_orientations(2000, "any", torch.Generator().manual_seed(0))
    assert abs(float((anyrot @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))[:, 2].mean())) < 0.05


def test_samples_respect_the_anatomy(batch):
    _, b = batch
    d = decompose(b.xyz)
    lo, hi = rom_bounds()
    assert (d.angles >= lo - 1e-6).all() and (d.angles <= hi + 1e-6).all()
    assert torch.allclose(d.angles, b.angles, atol=1e-6)
    from bmclib.losses import violations

    out = violations(b.xyz, BMCLimits.default())
    assert not out[:, 28:].any()  # every joint angle inside its literature polygon


# ---------------------------------------------------------------- labels and images
def test_projection_and_labels(batch):
    _, b = batch
    assert (project(b.xyz, b.K) - b.uv).abs().max() < 1e-3
    vis = b.visible
    assert vis.float().mean() > 0.4
    uv_vis = b.uv[vis]
    assert (uv_vis >= -0.5).all() and (uv_vis <= 127.5).all()  # visible joints lie inside the image
    assert torch.allclose(b.scale, (b.xyz[:, 10] - b.xyz[:, 9]).norm(dim=-1))
    assert (b.xyz[..., 2] > 0.3).all()


def test_mask_covers_visible_keypoints_and_images_are_real(batch):
    _, b = batch
    px = b.uv.round().long().clamp(0, 127)
    on_mask = b.masks[torch.arange(len(px))[:, None], px[..., 1], px[..., 0]] > 0  # (B, 21)
    assert on_mask[b.visible].float().mean() > 0.97
    img = b.images.float()
    assert (img.flatten(1).std(1) > 10).all()  # not blank, not constant
    hand = b.masks > 0
    assert (hand.flatten(1).float().mean(1) > 0.03).all()  # every image shows a hand


def test_domains_differ(batch):
    name, b = batch
    img = b.images.float() / 255
    # backgrounds: plain / gradient (smooth) in the source domain, textured in the target domain
    bg = ~(b.masks > 0)
    dx = (img[:, :, 1:] - img[:, :, :-1]).abs().mean(-1)  # (B, S, S-1)
    rough = (dx * (bg[:, :, 1:] & bg[:, :, :-1])).sum((1, 2)) / (bg[:, :, 1:] & bg[:, :, :-1]).sum((1, 2))
    if name == "source":
        assert float(rough.median()) < 0.02
    else:
        assert float(rough.median()) > 0.024  # smooth source backgrounds stay below 0.02


def test_occlusion_finger_behind_the_palm_is_invisible():
    """A hand showing its back, fingers curled under the palm: the fingertips are hidden."""
    angles = torch.zeros(1, 5, 3, 2, dtype=torch.float64)
    angles[:, 1:, :, 0] = torch.tensor([1.4, 1.6, 1.2], dtype=torch.float64)  # a fist, fingers tucked
    flat = template_pose(dtype=torch.float64)
    d = decompose(flat)
    fist = compose_parts(d.root_bones, d.bone_lengths.unflatten(-1, (5, 4))[..., 1:], angles)
    back = torch.tensor([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]], dtype=torch.float64)  # turn 180 deg about y
    xyz = (fist - fist.mean(1, keepdim=True)) @ back.T + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    K = torch.tensor([[[220.0, 0, 63.5], [0, 220.0, 63.5], [0, 0, 1]]], dtype=torch.float64)
    out, vis = render_hands(xyz, torch.tensor([0.088]), K, 128)
    tips = [8, 12, 16, 20]
    assert not vis[0, tips].any()
    knuckles = [5, 9, 13, 17]
    assert vis[0, knuckles].all()
    # the open hand, seen from either side, shows every joint
    for rot in (torch.eye(3, dtype=torch.float64), back):
        open_hand = (flat - flat.mean(0)) @ rot.T + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
        _, vis_open = render_hands(open_hand[None], torch.tensor([0.088]), K, 128)
        assert (project(open_hand[None], K) >= 0).all() and (project(open_hand[None], K) <= 127).all()
        assert vis_open.all()


def test_render_a_sphere_exactly():
    K = torch.tensor([[[200.0, 0, 31.5], [0, 200.0, 31.5], [0, 0, 1]]])
    c = torch.tensor([[[0.0, 0.0, 1.0]]])
    scene = Scene(K, c, c, torch.tensor([[0.05]]), torch.ones(1, 1, 3), torch.ones(1, 1, dtype=torch.bool),
                  torch.tensor([[0.0, 0.0, -1.0]]), torch.zeros(1))
    out = render(scene, 64)
    # the pixel centres nearest the image centre see the sphere's front at z = 1 - 0.05 (to ~1e-4)
    assert float(out.depth[0, 31:33, 31:33].min()) == pytest.approx(0.95, abs=2e-4)
    r_px = 200 * 0.05 / math.sqrt(1 - 0.05 ** 2)  # silhouette radius of a sphere in perspective
    assert float(out.mask.sum()) == pytest.approx(math.pi * r_px ** 2, rel=0.05)
    assert float(out.image[0, 31, 31, 0]) == pytest.approx(1.0, abs=0.01)  # lit head-on
    assert out.prim[0, 0, 0] == -1 and out.prim[0, 31, 31] == 0


def test_exact_depth_ties_go_to_the_higher_capsule():
    # two capsules ending in the same sphere (as bones do at a joint) tie exactly on its cap;
    # which one colours the pixel must not depend on thread scheduling
    K = torch.tensor([[[200.0, 0, 31.5], [0, 200.0, 31.5], [0, 0, 1]]])
    joint = torch.tensor([0.0, 0.0, 1.0])
    a = torch.stack([joint + torch.tensor([0.0, 0.0, 0.2]), joint + torch.tensor([0.0, 0.0, 0.3])])[None]
    b = joint.expand(1, 2, 3)
    albedo = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    scene = Scene(K.repeat(1, 1, 1), a, b, torch.full((1, 2), 0.05), albedo, torch.ones(1, 2, dtype=torch.bool),
                  torch.tensor([[0.0, 0.0, -1.0]]), torch.full((1,), 0.5))
    threads = torch.get_num_threads()
    try:
        outs = []
        for n in (1, threads, 1, threads):
            torch.set_num_threads(n)
            outs.append(render(scene, 64))
    finally:
        torch.set_num_threads(threads)
    assert (outs[0].prim[0, 31, 31] == 1) and outs[0].image[0, 31, 31, 0] == 0  # the second capsule's green
    for o in outs[1:]:
        assert torch.equal(o.image, outs[0].image) and torch.equal(o.prim, outs[0].prim)


def test_backgrounds_and_bad_kind():
    bg = backgrounds(["plain", "gradient", "texture", "clutter"], 32, torch.Generator().manual_seed(0))
    assert bg.shape == (4, 32, 32, 3) and (bg >= 0).all() and (bg <= 1).all()
    assert float(bg[0].std(dim=(0, 1)).max()) < 1e-6 and float(bg[1].std(dim=(0, 1)).max()) > 0.01
    with pytest.raises(ValueError, match="stripes"):
        backgrounds(["stripes"], 32, torch.Generator())


def test_bad_arguments():
    g = torch.Generator()
    with pytest.raises(ValueError, match="multiple of 8"):
        generate_batch("source", 2, 100, g)
    with pytest.raises(ValueError, match="n must be"):
        generate_batch("source", 0, 64, g)
    with pytest.raises(KeyError):
        generate_batch("elsewhere", 2, 64, g)
    with pytest.raises(ValueError, match="domain"):
        generate_dataset("/tmp/never", "elsewhere", 4, 0, progress=False)


# ---------------------------------------------------------------- data sets on disk
def test_dataset_layout_and_determinism(dataset, tmp_path):
    out, summary = dataset
    assert summary["splits"] == {"training": 80, "evaluation": 24}
    data = read_split(out, "training")
    assert data["xyz"].shape == (80, 21, 3) and len(data["images"]) == 80
    assert (out / "training" / "mask" / "00000079.jpg").is_file()
    again = tmp_path / "again"
    generate_dataset(str(again), "target", 80, 24, seed=5, size=64, progress=False, make_cache=False)
    for name in ("training_xyz.json", "training_K.json", "training_scale.json", "training_bmc.json",
                 "evaluation_xyz.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    other = tmp_path / "other"
    generate_dataset(str(other), "target", 80, 0, seed=6, size=64, progress=False, make_cache=False)
    assert (other / "training_xyz.json").read_bytes() != (out / "training_xyz.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds"):
        generate_dataset(str(out), "target", 8, 0, progress=False)


def test_cache_round_trip(dataset):
    out, _ = dataset
    data = read_split(out, "evaluation")
    cache = PreparedCache(out / "cache" / "evaluation")
    assert len(cache) == 24 and cache.size == 64
    ann = cache.annotations
    assert np.allclose(ann["xyz"], data["xyz"], atol=1e-7)
    assert np.allclose(ann["K"], data["K"], rtol=1e-6)
    assert np.array_equal(ann["visible"], data["visible"])
    uv = project(torch.from_numpy(data["xyz"]), torch.from_numpy(data["K"])).numpy()
    assert np.abs(ann["uv"] - uv).max() < 1e-3
    assert ann["has_3d"].all() and np.allclose(ann["scale"], data["scale"])
    from PIL import Image

    with Image.open(out / "evaluation" / "rgb" / "00000007.jpg") as im:
        assert np.array_equal(np.asarray(im), cache[7]["image"])
    assert cache.meta["source"]["labels"] == "3d"


def test_target_training_cache_is_2d_only(dataset):
    out, _ = dataset
    cache = PreparedCache(out / "cache" / "training")
    assert not cache.annotations["has_3d"].any()
    assert np.isnan(cache.annotations["xyz"]).all() and np.isnan(cache.annotations["scale"]).all()
    assert np.isfinite(cache.annotations["uv"]).all()
    assert cache.meta["source"]["labels"] == "2d"


def _copy_cache(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_truncated_and_corrupted_caches(dataset, tmp_path):
    out, _ = dataset
    src = out / "cache" / "evaluation"
    trunc = _copy_cache(src, tmp_path / "trunc")
    with open(trunc / "images.u8", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match=r"images.u8: truncated.*expected 294912 bytes.*found 1000"):
        PreparedCache(trunc)
    bad = _copy_cache(src, tmp_path / "bad")
    raw = bytearray((bad / "annotations.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (bad / "annotations.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        PreparedCache(bad)
    nometa = _copy_cache(src, tmp_path / "nometa")
    (nometa / "meta.json").unlink()
    with pytest.raises(ValueError, match="incomplete prepared cache"):
        PreparedCache(nometa)
    wrongfmt = _copy_cache(src, tmp_path / "wrongfmt")
    meta = json.loads((wrongfmt / "meta.json").read_text())
    (wrongfmt / "meta.json").write_text(json.dumps({**meta, "version": 7}))
    with pytest.raises(ValueError, match="unsupported cache version 7"):
        PreparedCache(wrongfmt)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        PreparedCache(tmp_path / "nowhere")
    cache = PreparedCache(src)
    with pytest.raises(IndexError, match="outside"):
        cache[24]


def test_broken_freihand_layouts(dataset, tmp_path):
    import shutil

    out, _ = dataset
    root = tmp_path / "fh"
    shutil.copytree(out, root, ignore=shutil.ignore_patterns("cache"))
    (root / "training_K.json").write_text((root / "training_K.json").read_text()[:-100])  # truncated JSON
    with pytest.raises(ValueError, match="training_K.json: not valid JSON"):
        read_split(root, "training")
    (root / "training_K.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing training intrinsics: expected .*training_K.json"):
        freihand_to_cache(root, tmp_path / "c", "training", progress=False)
    (root / "evaluation" / "rgb" / "00000003.jpg").unlink()
    with pytest.raises(ValueError, match="23 images for 24 annotations"):
        read_split(root, "evaluation")
    scale = json.loads((root / "evaluation_scale.json").read_text())
    (root / "evaluation_scale.json").write_text(json.dumps(scale[:5]))
    with pytest.raises(ValueError, match="expected 24 scales"):
        read_split(root, "evaluation")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        read_split(tmp_path / "missing", "training")
    with pytest.raises(ValueError, match="labels"):
        freihand_to_cache(out, tmp_path / "x", labels="4d")


def test_cli_synth(tmp_path, capsys):
    from bmclib.bench.cli import main

    assert main(["synth", "--domain", "source", "--num", "16", "--num-eval", "8", "--size", "64",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert "source: {'training': 16, 'evaluation': 8}" in capsys.readouterr().out
    assert PreparedCache(tmp_path / "s" / "cache" / "training").annotations["has_3d"].all()
    assert main(["synth", "--domain", "source", "--num", "16", "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["prepare-freihand", str(tmp_path / "s"), "--out", str(tmp_path / "c2"), "--labels", "2d"]) == 0
    assert not PreparedCache(tmp_path / "c2").annotations["has_3d"].any()
