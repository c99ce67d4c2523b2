import json

import pytest

from bmclib.bench.cli import main as bmc
from bmclib.bench.timing import format_jobs_table, format_table, run, run_jobs, run_train


def test_loss_rows_compare_each_variant_with_autograd():
    rows = run(batches=(8,), repeats=2, min_time=0.01, compile=False)
    by = {r["what"]: r for r in rows}
    assert set(by) == {"BMCLoss fwd+bwd (halfplane, fused)", "BMCLoss fwd+bwd (halfplane, autograd)",
                       "BMCLoss fwd+bwd (exact)", "decompose (no grad)"}
    auto = by["BMCLoss fwd+bwd (halfplane, autograd)"]["poses_per_s"]
    for r in rows:  # each ratio is the row's speed over the autograd row's, measured in the same run
        if r["vs_autograd"] is not None:
            assert r["vs_autograd"] == pytest.approx(r["poses_per_s"] / auto, rel=1e-9), r["what"]
    assert all(r["poses_per_s"] > 0 for r in rows) and by["decompose (no grad)"]["vs_autograd"] is None
    assert "| BMCLoss fwd+bwd (halfplane, fused) | cpu | 8 |" in format_table(rows)


def test_train_throughput_rows():
    (row,) = run_train(("tiny",), steps=2)
    assert row["preset"] == "tiny" and row["images_per_s"] > 0 and 0 <= row["bmc_share"] < 1


@pytest.mark.slow
def test_concurrent_jobs_benchmark(tmp_path, monkeypatch):
    import bmclib.bench.timing

    rows = run_jobs("tiny", (1, 2), steps=2, repeats=1)
    assert [r["jobs"] for r in rows] == [1, 2] and all(r["images_per_s"] > 0 for r in rows)
    assert rows[0]["vs_first"] == 1.0 and rows[1]["threads_each"] >= 1
    assert "| tiny | 2 |" in format_jobs_table(rows)
    # the command line writes the same rows with provenance (no second measurement here)
    monkeypatch.setattr(bmclib.bench.timing, "run_jobs", lambda *a, **k: rows[:1])
    out = tmp_path / "jobs.json"
    assert bmc(["bench", "jobs", "--preset", "tiny", "--jobs", "1", "--steps", "2", "--repeats", "1", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["jobs"] == 1 and saved["provenance"]["config"]["preset"] == "tiny"
    assert "bmc bench jobs" in out.with_suffix(".md").read_text()
