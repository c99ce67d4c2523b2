import json

import pytest

from bmclib.bench import format_jobs_table, main, run_jobs, run_train


def test_train_throughput_rows():
    (row,) = run_train(("tiny",), steps=2)
    assert row["preset"] == "tiny" and row["images_per_s"] > 0 and 0 <= row["bmc_share"] < 1


@pytest.mark.slow
def test_concurrent_jobs_benchmark(tmp_path, monkeypatch):
    import bmclib.bench

    rows = run_jobs("tiny", (1, 2), steps=2, repeats=1)
    assert [r["jobs"] for r in rows] == [1, 2] and all(r["images_per_s"] > 0 for r in rows)
    assert rows[0]["vs_first"] == 1.0 and rows[1]["threads_each"] >= 1
    assert "| tiny | 2 |" in format_jobs_table(rows)
    # the command line writes the same rows with provenance (no second measurement here)
    monkeypatch.setattr(bmclib.bench, "run_jobs", lambda *a, **k: rows[:1])
    out = tmp_path / "jobs.json"
    assert main(["jobs", "--preset", "tiny", "--jobs", "1", "--steps", "2", "--repeats", "1", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["jobs"] == 1 and saved["provenance"]["config"]["preset"] == "tiny"
    assert "bmc bench jobs" in out.with_suffix(".md").read_text()
