"""The executed notebooks committed in results/notebooks/ (made by `make reproduce`): the second tier.

The tiny smoke runs (tests/test_notebooks.py) check that every notebook runs; these check what a reader
of the committed copies sees: the formulas are there, the numbers the notebooks stored meet the checks
they were written for, no displayed table runs past 15 rows, and no output leaks a machine's paths."""
import json
import re
from pathlib import Path

import pytest

from bmclib.bench.reproduce import NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
DONE = ROOT / "results" / "notebooks"
MAX_ROWS = 15


def _cells(name):
    return json.loads((DONE / f"{name}.ipynb").read_text())["cells"]


def _texts(cell):
    for out in cell.get("outputs", []):
        for key in ("text/plain", "text/markdown", "text/html"):
            if key in out.get("data", {}):
                yield key, "".join(out["data"][key])
        if "text" in out:
            yield "stream", "".join(out["text"])


def _rows(kind: str, text: str) -> list[int]:
    """Data rows of each table in one output (HTML: rows of each tbody; Markdown: lines of each | block)."""
    if kind == "text/html":
        return [body.count("<tr") for body in re.findall(r"<tbody>(.*?)</tbody>", text, re.S)]
    if kind == "text/markdown":
        blocks = re.findall(r"(?:^\|.*\n?)+", text, re.M)
        return [max(0, len(b.strip().splitlines()) - 2) for b in blocks]
    return []


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_what_a_reader_of_the_executed_copy_sees(name):
    cells = _cells(name)
    leaks, long_tables = [], []
    for i, cell in enumerate(cells):
        for kind, text in _texts(cell):
            if re.search(r"(?<![\w.])/(?:work|tmp|home|root)/\S", text):
                leaks.append((i, re.search(r"/(?:work|tmp|home|root)/\S{0,60}", text).group(0)))
            long_tables += [(i, n) for n in _rows(kind, text) if n > MAX_ROWS]
        if cell["cell_type"] == "code":
            assert not any(o.get("output_type") == "error" for o in cell.get("outputs", [])), f"{name} cell {i}: error"
    assert leaks == [], f"{name}: absolute paths in outputs: {leaks[:3]}"
    assert long_tables == [], f"{name}: tables over {MAX_ROWS} rows (cell, rows): {long_tables}"


@pytest.mark.parametrize("name", NOTEBOOKS[:5])
def test_the_teaching_notebooks_write_their_formulas(name):
    text = "".join("".join(c["source"]) for c in _cells(name) if c["cell_type"] == "markdown")
    assert text.count("$$") >= 2, f"{name}: no displayed formula"


def test_the_stored_checks_of_the_committed_executions():
    m = {n: json.loads((DONE / f"{n}.metrics.json").read_text())["metrics"] for n in NOTEBOOKS}
    m1, m2, m3 = m["01_skeleton_decomposition"], m["02_angle_envelopes"], m["03_bmc_as_a_prior"]
    assert m1["formula_check_bones_m"] < 1e-12 and m1["formula_check_palm"] < 1e-8
    assert m1["formula_check_angles_deg"] < 1e-8 and m1["round_trip_max_m"] < 1e-12 and m1["joints_moved"] == 2
    assert m2["formula_check_terms"] < 1e-9 and m2["source terms outside fitted"] < 0.02
    assert m3["formula_check_root"] < 1e-9 and 5 < m3["root_gain"] < 50
    m4 = m["04_train_weakly_supervised"]
    assert m4["loss_check"] < 1e-6 and m4["demo_2d_last"] < m4["demo_2d_first"]  # the demo's 2D loss fell
    assert 0 < m4["2_target2d_seed0"]["epe_2d_px"] < 10  # the glove level's 2D on target-test, px of 96
    assert m["05_results_tables"]["controls"]


def test_the_readme_sections_say_what_the_committed_tables_say():
    from bmclib.bench.summary import write_sections

    assert write_sections(ROOT, check=True) == [], "README sections are stale: run `bmc summary`"


def test_bmc_summary_rewrites_a_stale_number_and_names_a_missing_marker(tmp_path):
    from bmclib.bench.summary import MARKERS, write_sections

    for rel in MARKERS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    readme = tmp_path / "README.md"
    good = readme.read_text()
    sentence = re.search(r"paired reduction (\d+\.\d)%", good)
    readme.write_text(good.replace(sentence.group(0), "paired reduction 99.9%", 1))
    assert write_sections(tmp_path, ROOT / "results", check=True) == ["README.md"]
    assert "99.9%" in readme.read_text()  # --check changes nothing
    assert write_sections(tmp_path, ROOT / "results") == ["README.md"]
    assert readme.read_text() == good
    readme.write_text(good.replace("<!-- summary:v3 end -->", ""))
    with pytest.raises(ValueError, match="README.md.*summary:v3 end"):
        write_sections(tmp_path, ROOT / "results")
