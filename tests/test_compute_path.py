"""The CPU compute paths (bmclib.model.compute_path): ``reference`` is float32 exactly as every run up
to benchmark v3 trained (configs and benchmark files that name no path keep it), ``fast`` is
channels_last with bf16 autocast where the CPU has native bf16; both predict the same geometry."""
import numpy as np
import pytest
import torch

from bmclib.bench.benchmark import load_benchmark
from bmclib.config import LEGACY_DEFAULTS, saved_config, validate_config
from bmclib.data.loader import AugmentConfig, Batch, augment
from bmclib.evaluate import predict_cache
from bmclib.model import ComputePath, HandPoseNet, compute_path, cpu_has_native_bf16
from bmclib.train import preset, run_compute_path

from test_v3 import V3_MINI


def test_each_path_says_what_it_does():
    assert compute_path("cpu", "reference") == ComputePath("cpu", False, False)
    assert compute_path("cpu", "fast") == ComputePath("cpu", True, cpu_has_native_bf16())
    assert compute_path("cuda", "reference", channels_last=True, amp=True) == ComputePath("cuda", True, True)
    assert compute_path("cpu", "reference").describe() == "cpu: contiguous, float32"
    with pytest.raises(ValueError, match="cpu_path must be 'reference' or 'fast', got 'quick'"):
        compute_path("cpu", "quick")
    with pytest.raises(ValueError, match="cpu_path must be one of"):
        validate_config(preset("tiny", cpu_path="quick"))


def test_new_runs_take_the_fast_path_and_old_ones_keep_the_reference():
    assert preset("cpu").cpu_path == "fast"  # bmc train's default
    old = preset("cpu").to_dict()
    del old["cpu_path"]  # a checkpoint or metrics file written before the field existed
    assert LEGACY_DEFAULTS["cpu_path"] == "reference" and saved_config(old, "old").cpu_path == "reference"
    assert run_compute_path(saved_config(old, "old"), "cpu") == ComputePath("cpu", False, False)


def test_benchmark_files_keep_the_path_they_record(tmp_path):
    (tmp_path / "v9.yaml").write_text(V3_MINI)
    assert load_benchmark(tmp_path / "v9.yaml").train_overrides(32, 3000)["cpu_path"] == "reference"
    (tmp_path / "v10.yaml").write_text(V3_MINI.replace("batch_weak: equal}", "batch_weak: equal, cpu_path: fast}"))
    assert load_benchmark(tmp_path / "v10.yaml").train_overrides(32, 3000)["cpu_path"] == "fast"
    from bmclib.bench.checkout import find_checkout

    if find_checkout() is not None:  # the committed files up to v3 name none: reference
        for v in ("v2", "v3"):
            bench = load_benchmark(find_checkout() / "results" / f"benchmark_{v}.yaml")
            assert bench.train_overrides(32, 3000)["cpu_path"] == "reference", v


def test_the_reference_path_predicts_bit_for_bit_as_the_plain_model(tmp_path):
    from bmclib.data.synth import generate_dataset
    from bmclib.data.cache import PreparedCache

    generate_dataset(str(tmp_path / "d"), "source", 4, 20, seed=2, size=64, progress=False)
    cache = PreparedCache(tmp_path / "d" / "cache" / "evaluation")
    torch.manual_seed(0)
    model = HandPoseNet(preset("tiny").model)
    plain = predict_cache(model, cache, batch_size=8)
    ref = predict_cache(model, cache, batch_size=8, path=compute_path("cpu", "reference"))
    assert all(np.array_equal(plain[k], ref[k]) for k in plain)
    fast = predict_cache(model, cache, batch_size=8, path=compute_path("cpu", "fast"))
    # bf16 autocast moves the keypoints by a fraction of a pixel at most (an untrained net, 64 px)
    assert np.abs(fast["uv"] - plain["uv"]).max() < 1.0
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # prepared in place


def test_the_affine_grid_augmentation_is_the_reference_map():
    g = torch.Generator().manual_seed(0)
    B, S = 6, 32
    K = torch.tensor([[60.0, 0, 15.5], [0, 60.0, 15.5], [0, 0, 1]]).expand(B, 3, 3).clone()
    xyz = torch.randn(B, 21, 3, generator=g) * 0.03 + torch.tensor([0, 0, 0.5])
    uv = (xyz @ K.transpose(1, 2))[..., :2] / (xyz @ K.transpose(1, 2))[..., 2:]
    batch = Batch(torch.rand(B, 3, S, S, generator=g), uv, xyz, K, torch.ones(B, dtype=torch.bool), torch.ones(B))
    ref = augment(batch, AugmentConfig(), torch.Generator().manual_seed(7))
    fast = augment(batch, AugmentConfig(), torch.Generator().manual_seed(7), affine_grid=True)
    for f in ("uv", "xyz", "K"):
        assert torch.equal(getattr(ref, f), getattr(fast, f)), f  # labels: the same ops
    assert (ref.images - fast.images).abs().max() < 1e-4  # the image: float32 round-off of the same map


def test_parity_compares_fast_runs_with_the_committed_ones_beside_the_seed_spread(tmp_path):
    import json

    from bmclib.bench.timing import format_parity_table, run_parity

    def write(root, name, m, path):
        d = root / "runs" / name
        d.mkdir(parents=True)
        cfg = {"cpu_path": path} if path else {}  # a committed v3 run names no path: reference
        (d / "metrics.json").write_text(json.dumps({"metrics": m, "provenance": {"config": cfg}}))

    keys = ("depth_norm_mm", "depth_mm", "root_depth_mm", "pa_mpjpe_mm", "epe_3d_mm", "epe_2d_px")
    ref, fast = tmp_path / "ref", tmp_path / "fast"
    for s, v in enumerate((30.0, 32.0, 28.0)):  # sd 2.0
        write(ref, f"cpu_v3-glove_2_target2d_seed{s}", {k: v for k in keys}, None)
    write(fast, "cpu_v3-glove_2_target2d_seed0", {**{k: 31.0 for k in keys}, "pa_mpjpe_mm": 35.0}, "fast")
    rows = run_parity(fast, ref)
    by = {r["metric"]: r for r in rows}
    assert by["depth_norm_mm"]["difference"] == 1.0 and by["depth_norm_mm"]["seed_sd"] == pytest.approx(2.0)
    assert by["depth_norm_mm"]["within_sd"] and not by["pa_mpjpe_mm"]["within_sd"]  # +5 mm: outside
    assert "5 of 6 differences lie within one seed-to-seed standard deviation" in format_parity_table(rows)
    assert by["depth_norm_mm"]["in_range"] and not by["pa_mpjpe_mm"]["in_range"]
    write(fast, "cpu_v3-glove_3_bmc_all_seed0", {k: 1.0 for k in keys}, "reference")
    with pytest.raises(FileNotFoundError, match="no reference run"):
        run_parity(fast, ref)
    write(ref, "cpu_v3-glove_3_bmc_all_seed0", {k: 1.0 for k in keys}, None)
    with pytest.raises(ValueError, match="not trained on the fast path"):
        run_parity(fast, ref)
