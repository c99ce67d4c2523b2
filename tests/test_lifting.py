"""Notebook 03's lifting experiment: geometry exact, refinement keeps the 2D, runs write metrics."""
import json

import pytest
import torch

from bmclib import skeleton as sk
from bmclib.camera import project
from bmclib.bench.lifting_runs import run_lifting
from bmclib.lifting import LiftingConfig, lift, make_sets
from bmclib.refine import refine
from bmclib.losses import guarded_bmc, root_extent
from bmclib.limits import BMCLimits
from bmclib.losses import BMCLoss


@pytest.fixture(scope="module")
def clean_sets():
    return make_sets(LiftingConfig.from_preset("tiny", noise_px=0.0))


def test_lifting_ground_truth_depths_gives_back_the_pose(clean_sets):
    s = clean_sets["test"]
    xyz = lift(s.z_rel.double(), s.uv.double(), s.K.double()) * sk.reference_length(s.xyz.double())[:, None, None]
    err = (xyz - s.xyz.double()).abs()  # metres; inputs are float32
    assert err.mean() < 1e-5 and err.max() < 2e-4  # the worst: a reference bone nearly along the ray


def test_refinement_keeps_the_2d_and_lowers_bmc(clean_sets):
    s = clean_sets["test"]
    limits = BMCLimits.fit(clean_sets["source"].xyz.double())
    z0 = s.z_rel + 0.3 * torch.randn(s.z_rel.shape, generator=torch.Generator().manual_seed(0))
    z0[:, 0] = 0
    z1 = refine(z0, s.uv, s.K, limits, steps=60)
    loss = BMCLoss(limits)
    assert loss(lift(z1, s.uv, s.K)).total < 0.5 * loss(lift(z0, s.uv, s.K)).total
    assert torch.allclose(project(lift(z1, s.uv, s.K), s.K), s.uv, atol=1e-3)  # pixels
    assert (z1[:, 0] == 0).all()


def test_run_lifting_writes_metrics_with_provenance(tmp_path):
    cfg = LiftingConfig.from_preset("tiny", steps=5, refine_steps=3)
    out = run_lifting(cfg, results_root=tmp_path, progress=False)
    for run in out:
        data = json.loads((tmp_path / "runs" / f"lifting_tiny_{run}_seed0" / "metrics.json").read_text())
        assert data["metrics"]["depth_mm"] > 0 and data["provenance"]["config"]["run"] == run
    with pytest.raises(ValueError, match="run must be one of"):
        run_lifting(cfg, runs=("target2d",), results_root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="preset must be"):
        LiftingConfig.from_preset("huge")


def test_the_root_guard(clean_sets):
    s = clean_sets["test"]
    assert (root_extent(s.z_rel) <= 1.0 + 1e-4).all()  # true poses always have a closed-form root
    z = s.z_rel[:4].clone().requires_grad_(True)
    with torch.no_grad():
        z[0, 10] = z[0, 9] + 1.5  # the reference bone deeper than it is long: no root
    per_pose = torch.tensor([0.2, 0.4, 0.0, 0.1])
    loss = guarded_bmc(per_pose, z, margin=0.05)
    # poses 1-3 keep their BMC; pose 0 trades its BMC for the hinge (1.5 - 0.95)
    assert loss.item() == pytest.approx((0.4 + 0.0 + 0.1 + 0.55) / 4, abs=1e-5)
    loss.backward()
    assert z.grad[0, 10] > 0 and z.grad[1].abs().sum() == 0  # the hinge pulls the bone back


def test_refine_any_models_predictions_and_the_command(clean_sets, tmp_path, capsys):
    """bmc refine: absolute predictions in, the same 2D out, depths moved into the limits; a left hand is
    refined as the mirror of the right one; bad input is named."""
    import numpy as np

    from bmclib.bench.cli import main
    from bmclib.predictions import read_pred_json, write_pred_json
    from bmclib.refine import refine_predictions

    s = clean_sets["test"]
    limits = BMCLimits.fit(clean_sets["source"].xyz.double())
    z0 = s.z_rel.double() + 0.3 * torch.randn(s.z_rel.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z0[:, 0] = 0
    noisy = (lift(z0, s.uv.double(), s.K.double()) * sk.reference_length(s.xyz.double())[:, None, None]).numpy()
    keep = (noisy[..., 2] > 0).all(1) & (root_extent(z0) < 0.9).numpy()  # a model's output: in front of the camera
    noisy, K = noisy[keep], s.K.double().numpy()[keep]
    assert len(noisy) > 16
    out = refine_predictions(noisy, K, limits, steps=60)
    uv_in, uv_out = project(torch.as_tensor(noisy), torch.as_tensor(K)), project(out, torch.as_tensor(K))
    assert (uv_out - uv_in).abs().max() < 1e-6  # pixels: every joint stayed on its ray
    bmc = BMCLoss(limits)
    assert bmc(out).total < 0.5 * bmc(torch.as_tensor(noisy)).total
    with pytest.raises(ValueError, match="in front of the camera"):
        refine_predictions(noisy - noisy[:, :1], K, limits)
    with pytest.raises(ValueError, match=r"K must be \(8, 3, 3\)"):
        refine_predictions(noisy[:8], K, limits)

    write_pred_json(tmp_path / "pred.json", noisy)
    (tmp_path / "K.json").write_text(json.dumps(K.tolist()))
    limits.save(tmp_path / "limits.json")
    args = ["--K", str(tmp_path / "K.json"), "--limits", str(tmp_path / "limits.json"), "--steps", "60"]
    assert main(["refine", str(tmp_path / "pred.json"), *args, "--out", str(tmp_path / "r.json")]) == 0
    assert "mean BMC" in capsys.readouterr().out
    right = read_pred_json(tmp_path / "r.json")[0]
    np.testing.assert_allclose(right, out.numpy(), atol=1e-9)
    # the same hands as left hands (mirrored joints, mirrored image: K's principal point mirrored too)
    W = 128
    K_left = K.copy()
    K_left[:, 0, 2] = W - 1 - K[:, 0, 2]
    write_pred_json(tmp_path / "left.json", sk.mirror_joints(noisy))
    (tmp_path / "K_left.json").write_text(json.dumps(K_left.tolist()))
    assert main(["refine", str(tmp_path / "left.json"), "--K", str(tmp_path / "K_left.json"), "--limits",
                 str(tmp_path / "limits.json"), "--steps", "60", "--side", "left", "--out", str(tmp_path / "l.npy")]) == 0
    np.testing.assert_allclose(sk.mirror_joints(np.load(tmp_path / "l.npy")), right, atol=1e-6)
    (tmp_path / "K_short.json").write_text(json.dumps(K[:3].tolist()))
    assert main(["refine", str(tmp_path / "pred.json"), "--K", str(tmp_path / "K_short.json"), "--out",
                 str(tmp_path / "x.json")]) == 2
    assert "3 intrinsics for" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
