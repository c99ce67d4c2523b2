"""Benchmark v3's building blocks: the data levels (glove, markers), BMC's wirings, the collapse
diagnostics, the per-image metrics and the wiring study on held-out source hands."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from bmclib import skeleton as sk
from bmclib.camera import from_2p5d, root_depth, to_2p5d
from bmclib.model import PoseOutput, soft_argmax


# ----------------------------------------------------------------------------- data levels
@pytest.mark.parametrize("domain", ["source", "target"])
def test_glove_and_markers_keep_every_pose_camera_and_scene(domain):
    from bmclib.data.synth import DOMAINS, generate_batch

    looks = {a: generate_batch(dataclasses.replace(DOMAINS[domain], appearance=a), 6, 64,
                               torch.Generator().manual_seed(3)) for a in ("skin", "glove", "markers")}
    for a in ("glove", "markers"):
        for field in ("uv", "xyz", "K", "scale", "angles"):
            assert torch.equal(getattr(looks[a], field), getattr(looks["skin"], field)), (a, field)
        assert (looks[a].images.float() - looks["skin"].images.float()).abs().mean() > 2  # the hands look different
    assert (looks["markers"].images != looks["glove"].images).any()


def test_the_glove_gives_each_finger_one_hue_and_each_segment_one_brightness():
    from bmclib.data.synth import GLOVE_HUES, GLOVE_LEVELS, GLOVE_PALM, glove_albedo

    a = glove_albedo(2)
    assert a.shape == (2, 31, 3)
    fingers = a[0, :15].reshape(5, 3, 3)
    for f in range(5):
        hue = fingers[f] / fingers[f].sum(-1, keepdim=True)  # chromaticity: the same along the finger
        assert torch.allclose(hue, hue[:1].expand(3, 3))
        assert torch.allclose(fingers[f].sum(-1) / sum(GLOVE_HUES[f]), torch.tensor(GLOVE_LEVELS, dtype=a.dtype))
    assert torch.allclose(a[0, 15:], torch.tensor(GLOVE_PALM, dtype=a.dtype).expand(16, 3))


def test_an_unknown_appearance_is_refused(tmp_path):
    from bmclib.data.synth import generate_dataset

    with pytest.raises(ValueError, match="appearance must be one of"):
        generate_dataset(str(tmp_path / "x"), "source", 4, 0, size=64, progress=False, appearance="paint")
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- wirings
def _fake_output(seed: int = 0, B: int = 4, cells: int = 8, size: int = 64):
    """A PoseOutput built from leaf heatmap logits and depth maps, as the model builds it."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, 21, cells, cells, generator=g).requires_grad_(True)
    maps = (0.1 * torch.randn(B, 21, cells, cells, generator=g)).requires_grad_(True)
    uv, prob = soft_argmax(logits, torch.ones(21), size / cells)
    z = (prob * maps).sum((2, 3))
    z = z - z[:, :1]
    K = torch.tensor([[120.0, 0, 32], [0, 120.0, 32], [0, 0, 1]]).expand(B, 3, 3)
    root = root_depth(uv, z, K).clamp(1, 100).detach()
    out = PoseOutput(uv, z, root, root, from_2p5d(uv, z, root, K), from_2p5d(uv, z, root, K), prob, maps)
    return out, logits, maps, K


@pytest.mark.parametrize("grad, reaches_2d", [("all", True), ("depth", True), ("maps", False)])
def test_which_wiring_lets_bmc_reach_the_2d_heatmaps(grad, reaches_2d):
    # "depth" detaches uv, yet z_rel = sum(prob * D) still carries BMC into the heatmaps; "maps" does not
    from bmclib.losses import BMCLoss
    from bmclib.train import bmc_pose, preset

    out, logits, maps, K = _fake_output()
    cfg = preset("tiny", use_bmc=True, bmc_grad=grad, bmc_root="closed_form")
    BMCLoss(reduction="mean")(bmc_pose(out, K, cfg)).total.backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0  # BMC always trains the depth maps
    assert (logits.grad is not None and bool(logits.grad.abs().sum() > 0)) == reaches_2d


def test_a_detached_root_judges_the_same_pose_with_another_gradient():
    from bmclib.losses import BMCLoss
    from bmclib.train import bmc_pose, preset

    grads, poses = {}, {}
    for root in ("closed_form", "detached"):
        out, logits, maps, K = _fake_output(1)
        pose = bmc_pose(out, K, preset("tiny", use_bmc=True, bmc_grad="maps", bmc_root=root))
        BMCLoss(reduction="mean")(pose).total.backward()
        grads[root], poses[root] = maps.grad.clone(), pose.detach()
    assert torch.equal(poses["closed_form"], poses["detached"])
    assert not torch.allclose(grads["closed_form"], grads["detached"])


def test_the_all_bones_root_recovers_the_true_distance_of_a_true_pose(hands):
    from bmclib.train import all_bones_root

    xyz = hands[0][:16].double()
    K = torch.tensor([[500.0, 0, 64], [0, 500.0, 64], [0, 0, 1]], dtype=torch.float64).expand(16, 3, 3)
    uv, z_rel, Z, s = to_2p5d(xyz, K)
    lengths = torch.stack([(xyz[:, c] - xyz[:, p]).norm(dim=-1) / s for p, c in sk.BONES], 1)  # (16, 20)
    for i in range(16):  # the true normalised lengths of that hand
        got = all_bones_root(uv[i:i + 1], z_rel[i:i + 1], K[i:i + 1], lengths[i])
        assert torch.allclose(got, Z[i:i + 1], rtol=1e-9)


def test_the_squared_2d_loss_pulls_harder_the_further_off_a_keypoint_is():
    from bmclib.data.loader import Batch
    from bmclib.train import compute_losses, preset

    pulls = {}
    for err in (1.0, 4.0):
        uv = torch.full((1, 21, 2), 30.0, requires_grad=True)
        out = PoseOutput(uv + err, torch.zeros(1, 21), torch.ones(1), torch.ones(1), torch.zeros(1, 21, 3),
                         torch.zeros(1, 21, 3), torch.zeros(1, 21, 4, 4))
        batch = Batch(torch.zeros(1, 3, 64, 64), torch.full((1, 21, 2), 30.0), torch.zeros(1, 21, 3),
                      torch.eye(3)[None], torch.zeros(1, dtype=torch.bool), torch.ones(1))
        compute_losses(out, batch, preset("tiny", loss_2d="px_sq"), None)["2d"].backward()
        pulls[err] = float(uv.grad.abs().mean())
    assert pulls[4.0] == pytest.approx(4 * pulls[1.0])


# ----------------------------------------------------------------------------- diagnostics and metrics
def test_extent_ratio_and_bone_ray_cos():
    from bmclib.diagnostics import bone_ray_cos, extent_ratio

    uv = torch.rand(3, 21, 2) * 40
    assert torch.allclose(extent_ratio(0.6 * uv + 7, uv), torch.full((3,), 0.6))
    j = torch.zeros(1, 21, 3)
    j[..., 2] = 0.5
    j[0, 1] = torch.tensor([0.0, 0.0, 0.6])  # along the ray
    j[0, 5] = torch.tensor([0.05, 0.0, 0.5])  # across it
    c = bone_ray_cos(j)
    mid = np.array([0.025, 0.0, 0.5])  # the second bone's midpoint: its ray is nearly perpendicular to it
    assert float(c[0, 0]) == pytest.approx(1.0) and float(c[0, 4]) == pytest.approx(mid[0] / np.linalg.norm(mid))


def test_per_image_metrics_separate_shape_distance_and_2d(hands):
    from bmclib.evaluate import per_image_metrics

    gt = hands[0][:20].numpy()
    m = per_image_metrics(gt, gt, np.zeros((20, 21, 2)), np.zeros((20, 21, 2)) + 1e-3)
    for k in ("depth_mm", "depth_norm_mm", "root_depth_mm", "pa_mpjpe_mm", "epe_3d_mm"):
        assert np.allclose(m[k], 0, atol=1e-4), k
    rel = gt - gt[:, :1]
    shrunk = gt[:, :1] + 0.7 * rel + np.array([0, 0, 0.05])  # a smaller hand, 5 cm further away
    m = per_image_metrics(shrunk, gt)
    assert np.allclose(m["depth_norm_mm"], 0, atol=1e-6)  # the shape is right: the scale is the truth's
    assert np.all(m["depth_mm"] > 1)  # the size is not
    assert np.allclose(m["root_depth_mm"], 50)


# ----------------------------------------------------------------------------- the study
@pytest.mark.slow
def test_the_wiring_study_trains_on_held_out_source_hands(tmp_path, capsys):
    from bmclib.bench.cli import main

    argv = ["wiring-study", "--preset", "tiny", "--wirings", "none", "source3d", "oracle", "late", "--appearance",
            "glove", "--data", tmp_path / "data", "--runs-dir", tmp_path / "runs", "--results", tmp_path / "results"]
    assert main([str(a) for a in argv]) == 0
    table = (tmp_path / "results" / "tables" / "wiring_study.md").read_text()
    assert "| glove | none | 0 |" in table and "| glove | late | 0 |" in table
    data = next((tmp_path / "data").glob("v2_tiny_64px_seed0_glove"))
    held = json.loads((data / "source_heldout" / "provenance.json").read_text())["config"]
    src = json.loads((data / "source" / "provenance.json").read_text())["config"]
    assert held["population_seed"] == src["population_seed"] + 100 and held["appearance"] == "glove"
    m = json.loads((tmp_path / "results" / "wiring_study" / "wiring_tiny_glove_late_seed0" / "metrics.json").read_text())
    assert m["provenance"]["data"]["eval_cache"].endswith("source_heldout/cache/evaluation")
    assert m["provenance"]["config"]["bmc_start"] == 3 and m["provenance"]["config"]["bmc_root"] == "detached"
    assert main([str(a) for a in argv]) == 0  # resumable: nothing left to train
    assert capsys.readouterr().out.count("[skip]") == 4
    # the controls on those runs: every metric x condition judged, the BMC wiring's values beside
    assert main(["controls", "--set", "source_val", "--preset", "tiny", "--appearance", "glove", "--results",
                 str(tmp_path / "results"), "--bootstrap", "50"]) == 0
    out = json.loads((tmp_path / "results" / "tables" / "controls_source_val.json").read_text())
    assert {(r["metric"], r["condition"]) for r in out["valid"]} >= {("depth_norm_mm", "better_than_no_bmc"),
                                                                      ("root_depth_mm", "beats_flat")}
    for r in out["valid"]:  # a valid cell has no failing positive and no passing negative, and judged both kinds
        if r["valid"]:
            assert all(r[a] in ("pass", "n/i") for a in ("oracle", "truth_through_2d"))
            assert all(r[a] in ("fail", "n/i") for a in ("source_only", "flat_const", "mean_pose"))
            assert "pass" in (r["oracle"], r["truth_through_2d"])
    assert {p["arm"] for p in out["power"]} >= {"oracle", "late"}
    assert {v["arm"] for v in out["values"]} >= {"base", "oracle", "late", "flat_const"}
    assert out["provenance"]["eval_cache"].endswith("source_heldout/cache/evaluation")


# ----------------------------------------------------------------------------- controls
def test_paired_reduction_finds_a_real_effect_and_not_a_null_one():
    from bmclib.bench.stats import paired_reduction

    g = np.random.default_rng(0)
    base = g.gamma(4.0, 10.0, size=(3, 400))
    half = paired_reduction(0.5 * base, base, n_boot=300)
    assert half["reduction"] == pytest.approx(0.5) and half["lo"] > 0.45 and half["every_seed"]
    null = paired_reduction(base * g.choice([0.9, 1.1], size=base.shape), base, n_boot=300)
    assert null["lo"] < 0 < null["hi"]


def test_the_controls_on_the_predicted_2d(hands):
    from bmclib.camera import project
    from bmclib.bench.controls import control_poses, source_stats

    xyz = hands[0][:32].double()
    K = torch.tensor([[500.0, 0, 64], [0, 500.0, 64], [0, 0, 1]], dtype=torch.float64).expand(32, 3, 3)
    uv = project(xyz, K).numpy()
    stats = source_stats(hands[0][32:].numpy())
    c = control_poses(uv, K.numpy(), xyz.numpy(), stats)
    assert np.allclose(c["truth_through_2d"], xyz.numpy())  # the true 2D + the true depth: the truth
    assert np.allclose(c["flat_const"][..., 2], stats.distance_m)  # one distance for every joint of every hand
    assert np.allclose(project(torch.as_tensor(c["mean_pose"]), K).numpy(), uv, atol=1e-6)  # on the same rays
    rel = c["mean_pose"][..., 2] - c["mean_pose"][:, :1, 2]
    assert np.allclose(rel, stats.mean_z_rel * stats.scale_m)


def test_validate_keeps_only_what_the_controls_agree_with():
    from bmclib.bench.controls import validate
    from bmclib.bench.stats import CONDITIONS

    g = np.random.default_rng(1)
    base = g.gamma(4.0, 10.0, size=(2, 300))
    good, bad, flat = 0.5 * base, 1.3 * base, 1.2 * base  # the oracle improves the metric, the guesses worsen it
    arms = {"base": base, "oracle": good, "truth_through_2d": 0.3 * base, "source_only": bad, "flat_const": flat,
            "mean_pose": bad}
    per = {a: {"depth_norm_mm": v, "root_depth_mm": v if a != "flat_const" else 0.4 * base} for a, v in arms.items()}
    for a in arms:  # the flat hand on each arm's 2D (the flat control's own flat hand is itself)
        per[f"flat_on:{a}"] = dict(per["flat_const"]) if a == "flat_const" else {"depth_norm_mm": flat,
                                                                                 "root_depth_mm": flat}
    rows = {(r["metric"], r["condition"]): r for r in validate(per)}
    assert all(rows[("depth_norm_mm", c)]["valid"] for c in CONDITIONS)
    r = rows[("root_depth_mm", "better_than_no_bmc")]  # a constant guess passes it: not a valid test
    assert r["flat_const"] == "pass" and not r["valid"]
    assert rows[("depth_norm_mm", "beats_flat")]["flat_const"] == "n/i"  # the flat hand against itself
    assert rows[("depth_norm_mm", "closes_25pct_of_gap")]["oracle"] == "n/i"
    per["truth_through_2d"]["depth_norm_mm"] = np.zeros_like(base)  # no error by construction: cannot judge
    assert {r["truth_through_2d"] for r in validate(per) if r["metric"] == "depth_norm_mm"} == {"n/i"}
    del per["mean_pose"]  # a missing control: nothing is valid
    assert not any(r["valid"] for r in validate(per))


def test_the_interval_keeps_the_seed_as_the_unit():
    from bmclib.bench.stats import paired_reduction

    g = np.random.default_rng(3)
    base = g.gamma(4.0, 10.0, size=(3, 500))
    x = base * np.array([[0.7], [1.05], [0.85]])  # an effect that changes sign between seeds
    r = paired_reduction(x, base, n_boot=300)
    assert r["lo"] < 0 < r["reduction"]  # the image bootstrap alone would call it significant
    assert paired_reduction(x[:1], base[:1], n_boot=300)["lo"] > 0


def test_power_needs_more_seeds_for_a_noisier_difference():
    from bmclib.bench.stats import power

    from scipy.stats import t

    quiet = power(np.array([-10.0, -10.5, -9.5]), base_mean=40.0)
    noisy = power(np.array([-10.0, -25.0, 5.0]), base_mean=40.0)
    assert quiet["seeds_needed"] == 2 and noisy["seeds_needed"] > 10
    n = noisy["seeds_needed"]  # the smallest n that the t-based requirement admits
    need = lambda k: ((t.ppf(0.975, k - 1) + t.ppf(0.8, k - 1)) * 15.0 / 10.0) ** 2  # noqa: E731
    assert n >= need(n) and n - 1 < need(n - 1)


def test_bmc_controls_on_benchmark_v2s_committed_runs(tmp_path, capsys):
    # v2's predictions are committed; its target-test labels are remade from the generator (small here:
    # the labels only, checked against every run's eval_sha256 -- a mismatch is refused)
    from bmclib.bench.cli import main

    rc = main(["controls", "--set", "v2", "--eval-cache", str(tmp_path / "nowhere"), "--results", "results"])
    assert rc == 2 and "nowhere" in capsys.readouterr().err


def test_choose_wiring_follows_the_rule_fixed_before_the_study():
    from bmclib.bench.wiring_study import choose_wiring

    def m(epe, ext, cos, depth, bmc=0.5):
        return {"epe_2d_px": epe, "extent_ratio": ext, "bone_ray_cos": cos, "depth_norm_mm": depth, "bmc_pred": bmc}
    runs = {"none": m(3.0, 0.98, 0.60, 30.0), "oracle": m(3.0, 0.98, 0.6, 20.0),
            "v2": m(6.8, 0.60, 0.85, 25.0),  # collapsed: best depth, but the 2D shrank
            "late": m(3.1, 0.97, 0.61, 28.0, bmc=0.3), "maps": m(3.05, 0.99, 0.62, 28.05, bmc=0.2),
            "pull_2d": m(3.2, 0.98, 0.6, 27.0)}  # 2D 6.7% worse: not qualified
    r = choose_wiring(runs)
    assert r["choice"] == "maps" and r["helps"]  # late and maps tie within 0.1 mm: the lower BMC wins
    assert set(r["qualified"]) == {"late", "maps"} and not r["checks"]["v2"]["qualified"]
    worse = choose_wiring({"none": m(3.0, 0.98, 0.6, 30.0), "late": m(3.0, 0.98, 0.6, 31.0)})
    assert worse["choice"] == "late" and not worse["helps"] and "no qualified wiring beat" in worse["text"]
    # nothing qualifies: the committed fallback takes the 2D extent nearest the no-BMC run's
    none = choose_wiring({"none": m(3.0, 0.98, 0.6, 30.0), "a": m(3.5, 0.97, 0.6, 25.0), "b": m(3.5, 0.979, 0.7, 35.0)})
    assert none["choice"] == "b" and none["qualified"] == [] and "it did not beat" in none["text"]


# ----------------------------------------------------------------------------- the benchmark file
V3_MINI = """format: bmclib.benchmark
name: v9
data: {seed: 1, levels: [glove, skin], n_hands_source: 20, n_hands_target: 32}
limits: {rule: source_quantile, interval_coverage: 0.99, hull_coverage: 0.99}
training: {loss_2d: px, bmc_grad: maps, bmc_root: detached, bmc_start_frac: 0.5, bmc_ramp_frac: 0.1, batch_weak: equal}
runs:
  1_source3d: {weak: null, use_bmc: false}
  2_target2d: {weak: 2d, use_bmc: false}
  3_bmc_all: {weak: 2d, use_bmc: true, bmc_terms: all}
  4_target3d_oracle: {weak: 3d, use_bmc: false}
test: {metric: depth_norm_mm, conditions: [better_than_no_bmc], base_run: 2_target2d, bmc_run: 3_bmc_all,
       oracle_run: 4_target3d_oracle, seeds: [0, 1, 2]}
"""


def test_a_v3_benchmark_file_with_levels_and_a_schedule(tmp_path):
    from bmclib.bench.benchmark import load_benchmark
    from bmclib.bench.runs import parse_run_name, run_name

    p = tmp_path / "v9.yaml"
    p.write_text(V3_MINI)
    b = load_benchmark(p)
    assert b.levels == ("glove", "skin") and b.data_seed == 1
    assert b.run_bench_name() == "v9-glove" and b.run_bench_name("skin") == "v9-skin"
    o = b.train_overrides(32, 3000)
    assert o["bmc_start"] == 1500 and o["bmc_ramp"] == 300 and o["batch_weak"] == 32 and "bmc_start_frac" not in o
    name = run_name("cpu", "3_bmc_all", 2, b.run_bench_name("skin"))
    assert name == "cpu_v9-skin_3_bmc_all_seed2"
    assert parse_run_name(name) == {"kind": "benchmark", "preset": "cpu", "bench": "v9-skin", "run": "3_bmc_all",
                                    "seed": 2}
    with pytest.raises(ValueError, match="level 'markers' is not one of data.levels"):
        b.run_bench_name("markers")


@pytest.mark.parametrize("edit, says", [
    (("levels: [glove, skin]", "levels: [glove, paint]"), "data.levels"),
    (("seed: 1,", "seed: -1,"), "data.seed"),
    (("bmc_start_frac: 0.5", "bmc_start_frac: 2"), "training.bmc_start_frac"),
    (("metric: depth_norm_mm", "metric: depth_flat_mm"), "test.metric"),
    (("conditions: [better_than_no_bmc]", "conditions: [wins]"), "test.conditions"),
    (("oracle_run: 4_target3d_oracle", "oracle_run: 5_nothing"), "test.oracle_run"),
    (("seeds: [0, 1, 2]", "seeds: [0]"), "test.seeds"),
])
def test_a_broken_v3_benchmark_file_names_the_field(edit, says, tmp_path):
    from bmclib.bench.benchmark import load_benchmark

    p = tmp_path / "v9.yaml"
    p.write_text(V3_MINI.replace(*edit))
    with pytest.raises(ValueError, match=says):
        load_benchmark(p)


def test_the_committed_v3_file_tests_only_what_both_control_sets_validated():
    from pathlib import Path

    from bmclib.bench.benchmark import load_benchmark

    root = Path(__file__).resolve().parents[1] / "results"
    b = load_benchmark(root / "benchmark_v3.yaml")
    assert b.raw["status"] == "frozen" and b.levels[0] == "glove" and b.data_seed != 0  # not v2's seen hands
    for name in ("controls_v2", "controls_source_val"):
        valid = {(r["metric"], r["condition"]): r["valid"] for r in
                 json.loads((root / "tables" / f"{name}.json").read_text())["valid"]}
        for cond in b.test["conditions"]:
            assert valid[(b.test["metric"], cond)], (name, cond)
    power = json.loads((root / "tables" / "controls_source_val.json").read_text())["power"]
    need = next(p["seeds_needed"] for p in power if p["arm"] == "late" and p["metric"] == b.test["metric"])
    assert len(b.test["seeds"]) >= max(3, need)
    assert b.training["bmc_grad"] == "maps" and b.training["bmc_root"] == "detached"  # the wiring study's choice
