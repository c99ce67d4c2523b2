"""Per-image scores written once (bmclib.bench.scores): the verdict reads them instead of the
evaluation cache, gives the same numbers either way, and refuses a stale or broken file by name."""
import json
import shutil
import zipfile

import numpy as np
import pytest

import bmclib.data.cache as cache_module
from bmclib.bench.benchmark import load_benchmark
from bmclib.bench.cli import main
from bmclib.bench.runs import run_name
from bmclib.bench.scores import SCORES_FILE, read_scores, write_scores
from bmclib.bench.verdict import level_runs

from test_verdict import _fake_runs

@pytest.fixture(scope="module")
def world(v9_world):
    return v9_world


NOISE = {"2_target2d": 0.012, "3_bmc_all": 0.006, "4_target3d_oracle": 0.002}


def _no_cache(monkeypatch):
    """Any attempt to open a prepared cache fails the test."""
    def refuse(path, *a, **k):
        raise AssertionError(f"opened the cache {path}")
    monkeypatch.setattr(cache_module, "PreparedCache", refuse)


def test_scored_runs_give_the_verdict_the_same_numbers_without_the_cache(world, tmp_path, monkeypatch):
    bench = load_benchmark(world / "v9.yaml")
    res = tmp_path / "res"
    _fake_runs(world, res, NOISE, seeds=(0, 1), uv_noise={"3_bmc_all": 1.0})
    from_cache, read = level_runs(bench, "glove", res)
    assert read["scored_here"] == 6
    runs = sorted((res / "runs").iterdir())
    for d in runs:
        write_scores(d)
    scores, meta = read_scores(runs[0])
    assert meta["images"] == 64 and meta["image_size"] == 64 and set(scores) == {"run", "flat_on"}

    _no_cache(monkeypatch)
    from_file, read2 = level_runs(bench, "glove", res)
    assert read2["scored_here"] == 0 and read2["eval_sha256"] == read["eval_sha256"]
    assert read2["images"] == read["images"] and read2["image_size"] == read["image_size"]
    assert set(from_file) == set(from_cache) and "flat_on:3_bmc_all" in from_file
    for arm in from_cache:
        for s in from_cache[arm]:
            for m, v in from_cache[arm][s].items():
                np.testing.assert_array_equal(from_file[arm][s][m], v, err_msg=f"{arm} seed {s} {m}")

    # one run without its scores, and no cache: the error names the cache and what to run
    (runs[0] / SCORES_FILE).unlink()
    monkeypatch.undo()
    shutil.move(world / "data", world / "data_away")
    try:
        with pytest.raises(FileNotFoundError, match="bmc scores"):
            level_runs(bench, "glove", res)
    finally:
        shutil.move(world / "data_away", world / "data")


def test_stale_or_broken_scores_are_refused_by_name(world, tmp_path):
    res = tmp_path / "res"
    _fake_runs(world, res, {"2_target2d": 0.01}, seeds=(0,))
    d = res / "runs" / run_name("cpu", "2_target2d", 0, "v9-glove")
    with pytest.raises(FileNotFoundError, match=str(d / SCORES_FILE)):
        read_scores(d)
    path = write_scores(d)
    good = path.read_bytes()

    with np.load(d / "predictions.npz") as z:  # the run re-evaluated: other predictions than those scored
        xyz, uv = z["xyz"], z["uv"]
    np.savez(d / "predictions.npz", xyz=xyz + np.float32(0.001), uv=uv)
    with pytest.raises(ValueError, match="predictions_sha256.*stale|other predictions"):
        read_scores(d)
    np.savez(d / "predictions.npz", xyz=xyz, uv=uv)
    read_scores(d)  # the same arrays again: accepted, whatever the .npz's zip timestamps

    m = json.loads((d / "metrics.json").read_text())  # evaluated on other labels since
    m["provenance"]["data"]["eval_sha256"] = "0" * 64
    (d / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="eval_sha256.*stale"):
        read_scores(d)
    with pytest.raises(ValueError, match="evaluated on other labels"):  # and it cannot be rescored on these
        write_scores(d)
    m["provenance"]["data"]["eval_sha256"] = json.loads(np.load(path)["meta"].item())["eval_sha256"]
    (d / "metrics.json").write_text(json.dumps(m))

    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=f"{path}: not a readable .npz"):
        read_scores(d)
    with zipfile.ZipFile(path, "w") as z:  # no meta
        with z.open("run/depth_mm.npy", "w") as f:
            np.save(f, np.zeros(64))
    with pytest.raises(ValueError, match="no 'meta' field"):
        read_scores(d)
    path.write_bytes(good)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["run/depth_mm"] = arrays["run/depth_mm"][:5]  # a wrong length
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"field 'run/depth_mm' has shape \(5,\)"):
        read_scores(d)
    arrays["run/depth_mm"] = np.full(64, np.nan)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="'run/depth_mm' has 64 non-finite"):
        read_scores(d)


def test_bmc_scores_writes_named_runs_and_names_what_is_missing(world, tmp_path, capsys):
    res = tmp_path / "res"
    _fake_runs(world, res, {"2_target2d": 0.01}, seeds=(0,))
    d = res / "runs" / run_name("cpu", "2_target2d", 0, "v9-glove")
    assert main(["scores", str(d)]) == 0 and (d / SCORES_FILE).is_file()
    assert main(["scores", str(d)]) == 0 and "1 already scored" in capsys.readouterr().out
    assert main(["scores", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no predictions.npz" in capsys.readouterr().err
    assert main(["scores", "--results", str(tmp_path / "empty")]) == 2
