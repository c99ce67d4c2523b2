"""Tables are rebuilt from metrics files alone; a broken file is named."""
import json

import pytest

from bmclib.cli import main
from bmclib.tables import build_all, collect


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
