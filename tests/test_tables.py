"""Tables are rebuilt from metrics files alone; a broken file is named."""
import json

import pandas as pd
import pytest

from bmclib.bench.cli import main
from bmclib.bench.runs import run_name
from bmclib.bench.tables import build_all, collect


def _write(root, name, depth, seed_commit="abc"):
    d = root / "runs" / name
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"metrics": {"depth_mm": depth, "epe_3d_mm": 2 * depth, "epe_2d_px": 5.0,
                                                            "pa_mpjpe_mm": 1.0, "auc_3d": 0.5, "implausible_poses": 0.1},
                                                "provenance": {"git_commit": seed_commit}}))


def test_build_all_means_stds_and_reduction(tmp_path, capsys):
    for seed, (a, b) in enumerate([(40.0, 20.0), (44.0, 24.0)]):
        _write(tmp_path, f"cpu_1_source3d_seed{seed}", a)
        _write(tmp_path, f"cpu_3_bmc_all_seed{seed}", b)
    _write(tmp_path, "something_else", 1.0)  # not a run name: ignored
    assert len(collect(tmp_path)) == 4
    assert main(["tables", "--results", str(tmp_path)]) == 0
    rows = (tmp_path / "tables" / "synthetic_benchmark.csv").read_text().splitlines()
    assert rows[1].startswith("1_source3d,2,42,2.82843") and rows[2].startswith("3_bmc_all,2,22,2.82843")
    assert rows[2].endswith(",47.619")  # depth reduction vs run 1, percent
    md = (tmp_path / "tables" / "synthetic_benchmark.md").read_text()
    assert "| 3_bmc_all | 2 | 22.00 ± 2.83 |" in md and "47.6%" in md and "abc" in md
    assert (tmp_path / "figures" / "synthetic_benchmark_depth.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_a_diverged_run_is_capped_in_the_figure_not_in_the_table(tmp_path):
    import matplotlib.image

    for seed in range(2):
        _write(tmp_path, f"cpu_1_source3d_seed{seed}", 40.0 + seed)
        _write(tmp_path, f"cpu_2_target2d_seed{seed}", 38.0 + seed)
    _write(tmp_path, "cpu_6_bmc_depth_grad_seed0", 2419.6)
    build_all(tmp_path)
    md = (tmp_path / "tables" / "synthetic_benchmark.md").read_text()
    assert "| 6_bmc_depth_grad | 1 | 2419.60 | " in md  # one seed: no "± 0.00"
    assert "± 0.00 |" not in md.split("| 6_bmc_depth_grad |")[1].splitlines()[0]
    img = matplotlib.image.imread(tmp_path / "figures" / "synthetic_benchmark_depth.png")
    # the capped bar is drawn in its own colour (light red), the others in light blue
    red = ((abs(img[..., 0] - 0xfc / 255) < 0.02) & (abs(img[..., 1] - 0xbb / 255) < 0.02)).sum()
    blue = ((abs(img[..., 0] - 0x9e / 255) < 0.02) & (abs(img[..., 2] - 0xe1 / 255) < 0.02)).sum()
    assert red > 100 and blue > 100


def test_a_broken_metrics_file_is_named(tmp_path):
    (tmp_path / "runs" / "cpu_2_target2d_seed0").mkdir(parents=True)
    (tmp_path / "runs" / "cpu_2_target2d_seed0" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="cpu_2_target2d_seed0/metrics.json"):
        build_all(tmp_path)


def test_paired_effects_with_every_run_of_the_gap():
    """Paired per seed against run 1; the oracle gap recovered reads 0% for run 2 and 100% for the oracle
    itself (those two rows select a column twice: they used to raise 'duplicate labels')."""
    import pandas as pd

    from bmclib.bench.tables import paired_effects

    vals = {"1_source3d": (40.0, 42.0), "2_target2d": (36.0, 38.0), "3_bmc_all": (30.0, 30.0),
            "4_target3d_oracle": (20.0, 22.0)}
    sub = pd.DataFrame([{"run": r, "seed": s, "m": v[s], "depth_flat_mm": 40.0} for r, v in vals.items() for s in (0, 1)])
    eff = paired_effects(sub, "m").set_index("run")
    assert eff.loc["2_target2d", "oracle gap recovered (%)"] == pytest.approx(0.0)
    assert eff.loc["4_target3d_oracle", "oracle gap recovered (%)"] == pytest.approx(100.0)
    assert eff.loc["3_bmc_all", "oracle gap recovered (%)"] == pytest.approx(100 * (6 / 16 + 8 / 16) / 2)
    assert eff.loc["3_bmc_all", "m - run 1 (mean)"] == pytest.approx(-11.0)
    assert eff.loc["3_bmc_all", "vs flat hand (%)"] == pytest.approx(-25.0)
    assert eff.loc["1_source3d", "seeds paired"] == 2


def test_refine_study_on_a_tiny_run(tmp_path, capsys):
    """bmc tables --refine: a run's target-test predictions before and after refinement, from its own
    metrics file's provenance (evaluation cache and limits)."""
    from bmclib.bench.experiment import run_experiment

    run_experiment("tiny", seeds=(0,), runs=["1_source3d"], data_root=str(tmp_path / "data"),
                   runs_root=str(tmp_path / "runs"), results_root=str(tmp_path / "results"), progress=False,
                   benchmark="results/benchmark_v2.yaml")
    assert main(["tables", "--results", str(tmp_path / "results"), "--refine", "1_source3d", "--preset", "tiny",
                 "--seeds", "0"]) == 0
    md = (tmp_path / "results" / "tables" / "refine_v2_tiny.md").read_text()
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert wrote == [f"wrote {tmp_path / 'results' / 'tables' / 'refine_v2_tiny.md'}"]  # no other table touched
    rows = [line for line in md.splitlines() if line.startswith("| 1_source3d")]
    assert len(rows) == 3 and "| before |" in rows[0] and "| after (prediction root) |" in rows[1]
    bmc_before, bmc_kept_root, bmc_closed_root = (float(r.split("|")[-3]) for r in rows)
    assert bmc_kept_root < bmc_before and bmc_closed_root < bmc_before  # refined into the limits
    assert "behind the camera" not in md

    # a hand predicted behind the camera (as skin-level runs do on a few images) has no rays to refine
    # along: it is scored as predicted, counted, and does not stop the study
    from bmclib.predictions import read_predictions, write_predictions

    f = tmp_path / "results" / "runs" / run_name("tiny", "1_source3d", 0, "v2") / "predictions.npz"
    p = read_predictions(f)
    p["xyz"][0, :, 2] = -p["xyz"][0, :, 2]
    write_predictions(f, p["xyz"], p["uv"])
    assert main(["tables", "--results", str(tmp_path / "results"), "--refine", "1_source3d", "--preset", "tiny",
                 "--seeds", "0"]) == 0
    md = (tmp_path / "results" / "tables" / "refine_v2_tiny.md").read_text()
    assert f"run 1_source3d: 1 of {len(p['xyz'])} images over 1 seeds" in md
    csv = pd.read_csv(tmp_path / "results" / "tables" / "refine_v2_tiny.csv")
    assert (csv["unrefined"] == 1).all() and len(csv) == 3
    bmc_before, bmc_kept_root, _ = csv["bmc_pred"]
    assert bmc_kept_root < bmc_before  # the other hands are still refined
