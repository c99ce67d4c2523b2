"""The project's own files agree with each other: environment.yml vs pyproject.toml, README, CI."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_pip_section_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_norm(r) for r in project["dependencies"] + [r for reqs in extras.values() for r in reqs]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(r) for r in pip if not r.startswith("-")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    assert "-e ." in pip
    # torch from the CPU wheel index, not PyPI's multi-GB CUDA build
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip


def test_layout_of_the_product_card():
    for name in ("notebooks", "bmclib", "data_scripts", "results", "tests", "environment.yml", "README.md",
                 "pyproject.toml", "Makefile", ".ci/run"):
        assert (ROOT / name).exists(), name


def test_readme_opens_with_the_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make reproduce", "make test"]
    assert readme.index("```") < readme.index("## ")  # before any section
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_cli_entry_point_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["bmc"] == "bmclib.cli:main"


def test_cli_limits_round_trip(tmp_path, capsys):
    from bmclib.cli import main

    assert main(["limits", "--save", str(tmp_path / "l.json")]) == 0
    assert main(["limits", str(tmp_path / "l.json")]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("index_pip ") for line in out.splitlines()) == 2  # two tables
    assert main(["limits", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_fit_limits_script(tmp_path, hands, capsys):
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("fit_limits", ROOT / "data_scripts" / "fit_limits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    np.save(tmp_path / "j.npy", hands[0].numpy())
    assert mod.main([str(tmp_path / "j.npy"), "--out", str(tmp_path / "l.json"), "--coverage", "0.99"]) == 0
    from bmclib.limits import BMCLimits

    assert BMCLimits.load(tmp_path / "l.json").meta["coverage"] == 0.99
    np.save(tmp_path / "bad.npy", np.zeros((5, 20, 3)))
    assert mod.main([str(tmp_path / "bad.npy"), "--out", str(tmp_path / "x.json")]) == 2
    assert "bad.npy" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
