"""The project's own files agree with each other: environment.yml vs pyproject.toml, README, CI."""
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_pip_section_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_norm(r) for r in project["dependencies"] + [r for reqs in extras.values() for r in reqs]
              if not r.startswith(project["name"] + "[")}  # an extra that names another extra
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
    assert project["scripts"]["bmc"] == "bmclib.bench.cli:main"


def test_cli_limits_round_trip(tmp_path, capsys):
    from bmclib.bench.cli import main

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


def _closure(names):
    """The installed distributions ``names`` need (their requirements, recursively; extras off)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = {}, list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    return seen


def _build_wheel(tmp_path: Path) -> Path:
    """The project's wheel, built without network from a copy of the sources (setuptools writes
    build/ and egg-info beside the sources it builds)."""
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "bmclib", src / "bmclib", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("bmc_hand-*.whl")
    return wheel


def _venv_with(tmp_path: Path, names: list[str], wheel: Path) -> tuple[Path, Path, Path]:
    """A fresh venv ``(folder, python, site-packages)`` holding ``names`` and what they need (each
    distribution's top-level entries linked from this environment: no download) and ``wheel``
    unpacked into site-packages (a pure-Python wheel so unpacked is installed)."""
    import subprocess
    import sys
    import zipfile

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    for dist in _closure(names).values():
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            if (base / top).exists() and not (site / top).exists():
                (site / top).symlink_to(base / top)
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return venv, py, site


@pytest.mark.slow
def test_the_wheel_installs_with_torch_and_numpy_alone(tmp_path):
    """Build the wheel, install it into a fresh virtual environment that holds only torch,
    numpy and what they need (linked from this environment: no download), and use the loss."""
    import subprocess
    import zipfile
    from importlib import metadata

    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    hard = sorted(re.split(r"[<>=!~ ;\[]", line.split(":", 1)[1].strip())[0]
                  for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert hard == ["numpy", "torch"], hard
    assert "License-Expression: MIT" in meta  # and the text itself ships in the wheel
    with zipfile.ZipFile(wheel) as z:
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in z.namelist()), z.namelist()
    assert {"fit", "data", "notebooks", "browser", "dev"} <= {line.split(":", 1)[1].strip() for line in
                                                               meta.splitlines() if line.startswith("Provides-Extra:")}

    venv, py, site = _venv_with(tmp_path, ["torch", "numpy"], wheel)
    assert metadata.version("bmc-hand") == re.search(r"^Version: (.+)$", meta, re.M).group(1)

    code = """
import importlib.util, sys
import torch
import bmclib
from bmclib import BMCLimits, BMCLoss
from bmclib.handmodel import template_pose
for name in ("scipy", "pandas", "matplotlib", "PIL", "tqdm", "yaml"):
    assert importlib.util.find_spec(name) is None, name + " should not be installed here"
j = (template_pose() + torch.tensor([0.0, 0.0, 5.0])).requires_grad_(True)
bent = j.detach().clone(); bent[8] += torch.tensor([0.0, 0.5, 0.0])  # a bent index tip
loss = BMCLoss(BMCLimits.default())
out = loss(torch.stack([j, bent.requires_grad_(True)]))
out.total.sum().backward()
assert bmclib.__file__.startswith(sys.prefix), bmclib.__file__
print(f"ok {out.total.tolist()}")
"""
    run = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0 and run.stdout.startswith("ok"), run.stdout + run.stderr
    cli = subprocess.run([str(py), "-m", "bmclib.cli", "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert cli.stdout.strip() == f"bmc (bmclib) {metadata.version('bmc-hand')}", cli.stderr
    import numpy as np

    np.save(tmp_path / "joints.npy", np.zeros((4, 21, 3)))
    fit = subprocess.run([str(py), "-m", "bmclib.cli", "fit-limits", str(tmp_path / "joints.npy"), "--out",
                          str(tmp_path / "l.json")], capture_output=True, text=True, cwd=tmp_path)
    assert fit.returncode == 2 and 'bmc-hand[fit]' in fit.stderr, fit.stderr  # names the extra, no traceback


@pytest.mark.slow
def test_the_installed_wheel_runs_the_user_commands_outside_the_checkout(tmp_path):
    """The wheel unpacked into a fresh environment (the data and fit extras linked from this one),
    run from a folder outside the checkout: synth, train on the cache it made, evaluate, fit-limits,
    audit and refine work; a benchmark command says that it needs the checkout."""
    import subprocess
    import zipfile
    from importlib import metadata

    wheel = _build_wheel(tmp_path)
    need = ["torch", "numpy", "scipy", "matplotlib", "pillow", "tqdm", "pyyaml", "pandas", "plotly"]
    venv, py, site = _venv_with(tmp_path, need, wheel)
    with zipfile.ZipFile(wheel) as z:
        entry = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    # the console script the wheel declares, written as pip writes it
    target = re.search(r"^bmc\s*=\s*([\w.]+):(\w+)\s*$", entry, re.M)
    assert target, entry
    script = venv / "bin" / "bmc"
    script.write_text(f"#!{py}\nimport sys\nfrom {target[1]} import {target[2]}\nsys.exit({target[2]}())\n")
    script.chmod(0o755)
    work = tmp_path / "elsewhere"  # no results/, no notebooks/: not a checkout
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MPLBACKEND": "Agg"}

    def bmc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=work, env=env, timeout=600)

    where = subprocess.run([str(py), "-c", "import bmclib; print(bmclib.__file__)"], capture_output=True, text=True,
                           cwd=work, env=env)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # the wheel's copy, not the checkout
    assert metadata.version("bmc-hand")  # (the checkout's own install is untouched)
    steps = [("synth", "--domain", "source", "--preset", "tiny", "--num", "16", "--num-eval", "8", "--size", "64",
              "--out", "synth", "--quiet"),
             ("train", "--preset", "tiny", "--source", "synth/cache/training", "--steps", "2", "--name", "r",
              "--out", "runs", "--device", "cpu", "--limits", "default"),
             ("evaluate", "runs/r", "--cache", "synth/cache/evaluation", "--results", "res", "--device", "cpu"),
             ("fit-limits", "synth/cache/training", "--out", "limits.json"),
             ("audit", "res/r/predictions.npz", "--limits", "limits.json", "--out", "audit"),
             ("refine", "res/r/predictions.npz", "--K", "synth/cache/evaluation", "--out", "refined.npz",
              "--steps", "5")]
    for args in steps:
        r = bmc(*args)
        assert r.returncode == 0, f"bmc {' '.join(args)}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert (work / "audit" / "audit.md").is_file() and (work / "refined.npz").is_file()
    r = bmc("reproduce", "--only", "data")
    assert r.returncode == 2 and "needs the bmc-hand checkout" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = bmc("verdict")  # a benchmark command with a default file in the checkout: named, no traceback
    assert r.returncode == 2 and "benchmark_v3.yaml" in r.stderr and "Traceback" not in r.stderr, r.stderr
