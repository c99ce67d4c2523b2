"""The notebooks: structure (cheap) and a real papermill execution of every one with the
tiny preset, checked through the metrics files they write (never their cell outputs)."""
import ast
import json
import re
from pathlib import Path

import pytest

from bmclib.bench.reproduce import NOTEBOOKS, notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"


def _cells(name):
    return json.loads((NB_DIR / f"{name}.ipynb").read_text())["cells"]


def _parameters(name) -> dict:
    cell = next(c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", []))
    out = {}
    for node in ast.parse("".join(cell["source"])).body:
        assert isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name), \
            f"{name}: parameters cell holds annotated assignments only, got {ast.dump(node)[:80]}"
        out[node.target.id] = ast.literal_eval(node.value)  # raises on anything but a literal
    return out


def test_every_notebook_on_disk_is_known_and_listed_in_the_readme():
    on_disk = sorted(p.stem for p in NB_DIR.glob("*.ipynb"))
    assert on_disk == sorted(NOTEBOOKS)
    readme = (ROOT / "README.md").read_text()
    for name in NOTEBOOKS:
        assert f"notebooks/{name}.ipynb" in readme, f"{name} is not listed in README.md"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name):
    import nbformat

    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters'"
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, f"{name}: stored outputs in a source notebook"
    # every parameter is typed and documented with a help comment
    for line in tagged[0].source.splitlines():
        assert re.match(r"^\w+: \w+ = .+  # \S", line), f"{name}: parameter line without type or help: {line!r}"
    # the first code cell after the parameters seeds and picks the device
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "setup(seed, device)" in code[code.index(tagged[0]) + 1].source
    # no library code in notebooks
    for c in code:
        assert not re.search(r"^(def|class) ", c.source, re.M) or "def on_log" in c.source or "def outside" in c.source, \
            f"{name}: define library code in bmclib, not in the notebook"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_files_and_papermill_help(name):
    import papermill as pm

    declared = _parameters(name)
    for required in ("preset", "seed", "device", "results_root", "data_root", "runs_root"):
        assert required in declared, f"{name}: parameter {required} missing"
    for preset in ("tiny", "cpu", "gpu"):
        params = notebook_parameters(name, preset)
        unknown = set(params) - set(declared)
        assert not unknown, f"notebooks/params/{preset}/{name}.yaml: unknown parameters {sorted(unknown)}"
        for k, v in params.items():
            assert type(v) is type(declared[k]), f"{preset}/{name}.yaml: {k} is {type(v).__name__}"
    inspected = pm.inspect_notebook(str(NB_DIR / f"{name}.ipynb"))
    assert set(inspected) == set(declared)
    assert all(p["help"] for p in inspected.values()), f"{name}: a parameter without help text"


def test_parameters_file_errors_name_the_file(tmp_path):
    (tmp_path / "params" / "cpu").mkdir(parents=True)
    (tmp_path / "params" / "cpu" / "x.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="x.yaml"):
        notebook_parameters("x", "cpu", tmp_path)
    with pytest.raises(FileNotFoundError, match="y.yaml"):
        notebook_parameters("y", "cpu", tmp_path)


@pytest.fixture(scope="module")
def tiny_reproduction(tmp_path_factory):
    """``bmc reproduce --preset tiny`` into a temporary results / data folder (all six notebooks)."""
    from bmclib.bench.reproduce import reproduce

    root = tmp_path_factory.mktemp("repro")
    reproduce("tiny", str(root / "results"), str(root / "data"))
    return root


def _metrics(root, name):
    return json.loads((root / "results" / "notebooks" / f"{name}.metrics.json").read_text())


@pytest.mark.slow
def test_tiny_reproduction_writes_every_executed_notebook(tiny_reproduction):
    for name in NOTEBOOKS:
        out = tiny_reproduction / "results" / "notebooks" / f"{name}.ipynb"
        nb = json.loads(out.read_text())
        assert nb["metadata"]["papermill"]["parameters"]["preset"] == "tiny"
        assert nb["metadata"]["papermill"]["input_path"] == f"notebooks/{name}.ipynb"  # no machine's folder
        m = _metrics(tiny_reproduction, name)
        assert m["provenance"]["preset"] == "tiny" and m["provenance"]["git_commit"]
    assert not list((tiny_reproduction / "results" / "notebooks").glob("*.partial.ipynb"))


@pytest.mark.slow
def test_tiny_notebook_01_and_02_measure_the_decomposition(tiny_reproduction):
    m1 = _metrics(tiny_reproduction, "01_skeleton_decomposition")["metrics"]
    assert m1["round_trip_max_m"] < 1e-12
    assert m1["edited_angle_error_deg"] < 1e-6
    assert m1["joints_moved"] == 2  # the index PIP angle moves the DIP and the tip, nothing else
    # the formulas written in the notebook, computed in numpy, equal bmclib's values
    assert m1["formula_check_bones_m"] < 1e-12 and m1["formula_check_palm"] < 1e-8
    assert m1["formula_check_angles_deg"] < 1e-8 and m1["formula_check_frame"] < 1e-12
    m2 = _metrics(tiny_reproduction, "02_angle_envelopes")["metrics"]
    assert m2["angle_term_min"] == 0.0 < m2["angle_term_at_175deg"]
    assert m2["formula_check_terms"] < 1e-9  # the written loss, in numpy, equals BMCLoss
    assert m2["bone_term_at_1.8x"] > 0 and m2["root_term_max"] > 0
    assert m2["source terms outside fitted"] <= 0.02  # quantile limits: about 1% of each term's values
    assert 0.4 < m2["hull_area_share"]["index_mcp"] < 0.85  # abduction narrows with flexion: not a box


@pytest.mark.slow
def test_tiny_notebooks_03_04_write_run_metrics_and_tables(tiny_reproduction):
    from bmclib.bench.regime import RegimeConfig

    res = tiny_reproduction / "results"
    m3 = _metrics(tiny_reproduction, "03_bmc_as_a_prior")["metrics"]
    assert m3["parts"] == len(RegimeConfig.from_preset("tiny").noise_px)
    assert 0 < m3["demo"]["depth_mm"]["source-only"] < 1000 and m3["tto_source_quantile"]
    assert m3["formula_check_root"] < 1e-9 and m3["root_gain"] > 1  # the written closed form == camera.root_depth
    assert (res / "figures" / "regime_map_tiny.png").stat().st_size > 10_000
    m4 = _metrics(tiny_reproduction, "04_train_weakly_supervised")["metrics"]
    runs = ("1_source3d", "2_target2d", "3_bmc_all", "4_target3d_oracle")
    assert {f"{r}_seed0" for r in runs} <= set(m4)
    assert m4["loss_check"] < 1e-6 and m4["total_check"] < 1e-5  # the loss written out == the training loop's
    for r in runs:
        assert (res / "runs" / f"tiny_v3-glove_{r}_seed0" / "predictions.npz").is_file()
    m5 = _metrics(tiny_reproduction, "05_results_tables")["metrics"]
    assert sorted(Path(p).name for p in m5["tables"]) == ["benchmark_v3-glove_tiny.md", "bmc_true_depth_v3-glove_tiny.md",
                                                           "regime_map_tiny.md"]
    assert (res / "figures" / "bmc_true_depth_v3-glove_tiny.png").stat().st_size > 10_000
    csv = (res / "tables" / "benchmark_v3-glove_tiny.csv").read_text().splitlines()
    assert csv[0].startswith("run,seeds,depth_norm_mm") and len(csv) == 5
    assert "Incomplete" in (res / "tables" / "benchmark_v3-glove_tiny.md").read_text()  # 1 of 6 seeds
    assert m5["controls"] and (res / "tables" / "controls_v3-glove_tiny.md").is_file()  # the controls on the v3 runs
    m6 = _metrics(tiny_reproduction, "06_pose_inspector")["metrics"]
    assert m6["samples"] == 32 and len(m6["shown"]) == 2
    assert (res / "figures" / "qualitative_tiny.png").stat().st_size > 10_000


@pytest.mark.slow
def test_rerun_skips_finished_steps(tiny_reproduction, capsys):
    from bmclib.bench.reproduce import reproduce

    reproduce("tiny", str(tiny_reproduction / "results"), str(tiny_reproduction / "data"), only=["01", "05"])
    out = capsys.readouterr().out
    assert out.count("skipped") == 2 and "01_skeleton_decomposition" in out


def test_a_failing_notebook_keeps_the_previous_executed_copy(tmp_path):
    import nbformat

    from bmclib.bench.reproduce import run_notebook

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x: int = 1  # a number")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("assert x == 1, f'x is {x}'")]
    nbformat.write(nb, tmp_path / "t.ipynb")
    out = tmp_path / "out"
    good = run_notebook("t", {"x": 1}, out, notebooks_dir=tmp_path, cwd=tmp_path)
    first = good.read_text()
    with pytest.raises(RuntimeError, match=r"(?s)notebook t failed.*x is 2.*partial output in .*t\.partial\.ipynb"):
        run_notebook("t", {"x": 2}, out, notebooks_dir=tmp_path, cwd=tmp_path)
    assert good.read_text() == first


def test_reproduce_rejects_unknown_steps(tmp_path, capsys):
    from bmclib.bench.cli import main

    assert main(["reproduce", "--preset", "tiny", "--only", "07_nothing", "--data", str(tmp_path)]) == 2
    assert "no such step" in capsys.readouterr().err
