"""The benchmark commands on broken or unusual inputs: every case exits 2 with one line naming the
file (or option) and the field, and nothing is half-written; none ends in a traceback or a
silently wrong table. Fake runs with known answers (tests/test_verdict.py), the committed tables
for `bmc summary`."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bmclib.bench.checkout import find_checkout
from bmclib.bench.cli import main
from bmclib.bench.stats import power
from bmclib.data.synth import generate_dataset

from test_v3 import V3_MINI
from test_verdict import _fake_runs

RUN = "cpu_v9-glove_3_bmc_all_seed1"
NOISE = {"1_source3d": 0.02, "2_target2d": 0.012, "3_bmc_all": 0.006, "4_target3d_oracle": 0.002}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    generate_dataset(str(root / "data"), "source", 16, 48, seed=1, size=64, progress=False)
    (root / "v9.yaml").write_text(V3_MINI.replace("seeds: [0, 1, 2]}", "seeds: [0, 1, 2], report_seeds: [0, 1, 2]}"))
    _fake_runs(root, root / "base", NOISE)
    return root


def _npz(edit):
    def f(d: Path):
        with np.load(d / "predictions.npz") as z:
            arrays = {k: z[k] for k in z.files}
        np.savez(d / "predictions.npz", **edit(arrays))
    return f


def _metrics(edit):
    def f(d: Path):
        m = json.loads((d / "metrics.json").read_text())
        (d / "metrics.json").write_text(json.dumps(edit(m)))
    return f


def _drop(block: dict, key: str) -> dict:
    return {k: v for k, v in block.items() if k != key}


RUN_CASES = {
    "truncated predictions": (lambda d: (d / "predictions.npz").write_bytes((d / "predictions.npz").read_bytes()[:200]),
                              "predictions.npz: not a readable .npz"),
    "empty predictions": (lambda d: (d / "predictions.npz").write_bytes(b""), "predictions.npz: not a readable .npz"),
    "predictions without uv": (_npz(lambda a: {"xyz": a["xyz"]}), "predictions.npz: no 'uv' array"),
    "predictions at 1e30": (_npz(lambda a: {**a, "xyz": a["xyz"] * 1e30}), "field 'xyz' has a coordinate of"),
    "5 poses for 48 images": (_npz(lambda a: {k: v[:5] for k, v in a.items()}), "5 poses for the 48"),
    "1 pose for 48 images": (_npz(lambda a: {k: v[:1] for k, v in a.items()}), "1 poses for the 48"),
    "NaN prediction": (_npz(lambda a: {**a, "xyz": np.where(np.arange(48)[:, None, None] == 3, np.nan, a["xyz"])}),
                       "field 'xyz': sample 3: NaN"),
    "metrics without provenance": (_metrics(lambda m: {}), "metrics.json: field 'provenance' missing"),
    "metrics without data": (_metrics(lambda m: {"provenance": _drop(m["provenance"], "data")}),
                             "metrics.json: field 'provenance.data' missing"),
    "metrics a list": (_metrics(lambda m: [1, 2]), "metrics.json: expected a JSON object"),
    "metrics config a string": (_metrics(lambda m: {"provenance": {**m["provenance"], "config": "x"}}),
                                "metrics.json: field 'provenance.config' is not an object"),
    "metrics without eval_sha256": (_metrics(lambda m: {"provenance": {**m["provenance"], "data": _drop(
        m["provenance"]["data"], "eval_sha256")}}), "metrics.json: field 'provenance.data.eval_sha256' missing"),
    "truncated metrics": (lambda d: (d / "metrics.json").write_text((d / "metrics.json").read_text()[:20]),
                          "metrics.json: not valid JSON"),
    "non-UTF-8 metrics": (lambda d: (d / "metrics.json").write_bytes(b"\xff\xfe\x00garbage"), "metrics.json: not UTF-8"),
    "broken scores": (lambda d: (d / "scores.npz").write_bytes(b"PK broken"), "scores.npz: not a readable .npz"),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_verdict_names_a_broken_run(world, tmp_path, capsys, case):
    res = tmp_path / "res"
    shutil.copytree(world / "base", res)
    edit, says = RUN_CASES[case]
    edit(res / "runs" / RUN)
    rc = main(["verdict", "--benchmark", str(world / "v9.yaml"), "--results", str(res), "--bootstrap", "20"])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and (RUN in err or "scores" in err), err
    assert not (res / "tables").exists()  # nothing half-written


@pytest.mark.parametrize("edit, says", [
    (("report_seeds: [0, 1, 2]", "report_seeds: 5"), "test.report_seeds must list at least two distinct int seeds"),
    (("report_seeds: [0, 1, 2]", "report_seeds: [0, one, 2]"), "got [0, 'one', 2]"),
    (("seeds: [0, 1, 2],", "seeds: zero,"), "test.seeds must list"),
])
def test_verdict_names_a_broken_benchmark_file(world, tmp_path, capsys, edit, says):
    spec = tmp_path / "b.yaml"
    spec.write_text((world / "v9.yaml").read_text().replace(*edit))
    assert main(["verdict", "--benchmark", str(spec), "--results", str(world / "base")]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and says in err, err


@pytest.mark.parametrize("command", ["verdict", "controls"])
def test_zero_bootstrap_resamples_are_refused(world, capsys, command):
    argv = (["verdict", "--benchmark", str(world / "v9.yaml")] if command == "verdict" else ["controls", "--set", "v3"])
    assert main([*argv, "--results", str(world / "base"), "--bootstrap", "0"]) == 2
    assert "--bootstrap: expected an integer >= 1" in capsys.readouterr().err


def test_power_of_an_effect_lost_in_the_spread_is_infinite_not_a_crash():
    p = power(np.array([1e30, -1e30, 3e29]), base_mean=10.0, images_sd=1e30, n_images=48)
    assert p["seeds_needed"] == float("inf") and p["images_needed"] > 1e50
    zero = power(np.array([0.1, 0.2]), base_mean=0.0, images_sd=1.0)  # no effect to find: never enough
    assert zero["seeds_needed"] == float("inf") and zero["images_needed"] == float("inf")
    assert power(np.array([0.1, 0.2, 0.15]), 10.0)["seeds_needed"] == 2  # a clear effect: the minimum


@pytest.fixture
def checkout_copy(tmp_path):
    """The README files and committed results of the checkout (runs linked, not copied)."""
    repo = find_checkout()
    if repo is None:
        pytest.skip("needs the checkout's committed results")
    (tmp_path / "results").mkdir()
    shutil.copy(repo / "README.md", tmp_path / "README.md")
    for f in (repo / "results").iterdir():
        if f.name == "runs":
            (tmp_path / "results" / "runs").symlink_to(f)
        elif f.is_dir():
            shutil.copytree(f, tmp_path / "results" / f.name)
        else:
            shutil.copy(f, tmp_path / "results" / f.name)
    return tmp_path


def _set_cell(csv_text: str, row: int, column: str, value: str) -> str:
    lines = csv_text.splitlines()
    cells = lines[row].split(",")
    cells[lines[0].split(",").index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


SUMMARY_CASES = {
    "verdict without 'verdict'": ("benchmark_v3-glove.json", lambda t: "{}", "field 'verdict' missing"),
    "verdict without seeds": ("benchmark_v3-glove.json",
                              lambda t: json.dumps({**json.loads(t), "verdict": _drop(json.loads(t)["verdict"], "seeds")}),
                              "field 'verdict.seeds' missing"),
    "controls without valid": ("controls_v3-glove.json", lambda t: json.dumps(_drop(json.loads(t), "valid")),
                               "field 'valid' missing"),
    "controls valid a string": ("controls_v3-glove.json", lambda t: json.dumps({**json.loads(t), "valid": "yes"}),
                                "field 'valid' must list"),
    "garbage refine csv": ("refine_v3-glove_cpu.csv", lambda t: "\x00\x01 garbage,\n\"unclosed", "refine_v3-glove_cpu.csv"),
    "empty map csv": ("regime_map_images.csv", lambda t: "", "regime_map_images.csv: not a readable CSV"),
    "NaN in the map": ("regime_map_images.csv", lambda t: _set_cell(t, 1, "depth_norm_mm_reduction_pct", "nan"),
                       "would say 'nan'"),
}


@pytest.mark.parametrize("case", sorted(SUMMARY_CASES))
def test_summary_names_a_broken_table_and_writes_nothing(checkout_copy, capsys, case):
    name, edit, says = SUMMARY_CASES[case]
    f = checkout_copy / "results" / "tables" / name
    f.write_text(edit(f.read_text()))
    before = {p: p.read_bytes() for p in (checkout_copy / "README.md", checkout_copy / "results" / "README.md")}
    assert main(["summary", "--root", str(checkout_copy)]) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert all(p.read_bytes() == b for p, b in before.items())


def test_summary_of_intact_tables_is_up_to_date(checkout_copy, capsys):
    """The positive control of the suite above: the copied checkout's tables pass."""
    assert main(["summary", "--root", str(checkout_copy), "--check"]) == 0, capsys.readouterr()
