"""The pose inspector as a person uses it: JupyterLab in headless Debian Chromium.

Starts JupyterLab on localhost (temporary config, runtime and workspace folders, a random
token), opens notebooks/06_pose_inspector.ipynb (a copy with the tiny preset's parameters
injected by papermill, pointing at tiny runs this test trains), runs all cells from the
menu, waits for the plotly figures and the widgets (and for the 3D figure's data), drags the
flexion slider, checks that the 3D figure and the BMC readout change, saves a screenshot in
the test's temporary folder and shuts the server down. The README's picture of the inspector
is that screenshot: ``BMC_SCREENSHOT_TO=results/figures/inspector_jupyterlab.png pytest
tests/test_browser.py`` copies it there (tests write nowhere else by themselves).

Marked ``browser``; skipped where Chromium or Playwright is missing (``.ci/run`` installs
Debian's chromium, so CI runs it).
"""
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    import papermill as pm

    from bmclib.bench.experiment import run_experiment

    tmp = tmp_path_factory.mktemp("lab")
    roots = {"results_root": str(tmp / "results"), "data_root": str(tmp / "data" / "synth"),
             "runs_root": str(tmp / "data" / "runs")}
    run_experiment("tiny", [0], ["2_target2d", "3_bmc_all"], roots["data_root"], roots["runs_root"],
                   roots["results_root"], progress=False, benchmark=str(ROOT / "results" / "benchmark_v2.yaml"))
    nb_dir = tmp / "notebooks"
    nb_dir.mkdir()
    pm.execute_notebook(str(ROOT / "notebooks" / "06_pose_inspector.ipynb"), str(nb_dir / "06_pose_inspector.ipynb"),
                        parameters={"preset": "tiny", "n_examples": 2, **roots,
                                    "benchmark": str(ROOT / "results" / "benchmark_v2.yaml")}, prepare_only=True,
                        kernel_name="python3")
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "cfg"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "PYTHONPATH": str(ROOT)}
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nb_dir}",
                             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited: {(tmp / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            raise RuntimeError(f"jupyter lab did not answer on {base}: {(tmp / 'lab.log').read_text()[-2000:]}")
        yield {"base": base, "token": token, "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_inspector_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    shot = lab["tmp"] / "inspector_jupyterlab.png"
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(lab["tmp"] / "profile"), executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS, viewport={"width": 1400, "height": 1000})
        try:
            page = ctx.new_page()
            console = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text[:300]}") if m.type == "error" else None)
            page.goto(f"{lab['base']}/lab/tree/06_pose_inspector.ipynb?token={lab['token']}")
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            # JupyterLab sometimes asks which kernel to start (a race with loading the kernel specs)
            deadline = time.time() + 60
            while time.time() < deadline:
                dialog = page.locator(".jp-Dialog button:has-text('Select')")
                if dialog.count():
                    dialog.first.click()
                elif page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count():
                    break
                time.sleep(0.5)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            time.sleep(1)
            if page.locator(".jp-Dialog button:has-text('Select')").count():
                page.locator(".jp-Dialog button:has-text('Select')").first.click()
            page.click(".lm-MenuBar-itemLabel:text-is('Run')")
            page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
            inspector = ".bmc-pose-inspector"
            try:
                page.wait_for_selector(f"{inspector} .js-plotly-plot .main-svg", timeout=180_000)
                page.wait_for_selector(".bmc-prediction-browser .js-plotly-plot .main-svg", timeout=60_000)
            except Exception as e:
                page.screenshot(path=str(lab["tmp"] / "failure.png"), full_page=True)
                outputs = "\n".join(t[:500] for t in page.locator(".jp-OutputArea-output").all_inner_texts())
                raise AssertionError(f"widgets did not render ({type(e).__name__}); screenshot {lab['tmp'] / 'failure.png'}"
                                     f"\ncell outputs:\n{outputs}\nconsole errors:\n" + "\n".join(console[-20:])) from None
            readout = page.locator(f"{inspector} .bmc-a")
            # the plot's SVG appears before plotly has attached the traces: wait for the hand's trace
            has_hand = (f"() => {{ const d = document.querySelector('{inspector} .js-plotly-plot').data; "
                        f"return !!(d && d.length > 1 && d[1].x && d[1].x.length > 0); }}")
            try:
                page.wait_for_function(has_hand, timeout=60_000)
                page.locator(inspector).scroll_into_view_if_needed()  # JupyterLab hides cells out of view
                page.wait_for_function(f"() => document.querySelector('{inspector} .bmc-a').textContent.trim() !== ''",
                                       timeout=30_000)
            except Exception as e:
                page.screenshot(path=str(lab["tmp"] / "failure.png"), full_page=True)
                raise AssertionError(f"the inspector did not fill in ({type(e).__name__}); screenshot "
                                     f"{lab['tmp'] / 'failure.png'}") from None
            before_text = readout.text_content()
            read_x = f"() => JSON.stringify(document.querySelector('{inspector} .js-plotly-plot').data[1].x)"
            before_x = page.evaluate(read_x)
            page.locator(inspector).scroll_into_view_if_needed()
            # the first slider is the flexion of the selected joint (index PIP); drag it to the end
            slider = page.locator(f"{inspector} .widget-slider").first
            handle = slider.locator(".noUi-handle")
            track = slider.locator(".noUi-target").bounding_box()
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + track["width"] - 2, box["y"] + box["height"] / 2, steps=8)
            page.mouse.up()
            deadline = time.time() + 30
            while time.time() < deadline and (readout.text_content() == before_text or page.evaluate(read_x) == before_x):
                time.sleep(0.3)
            after_text, after_x = readout.text_content(), page.evaluate(read_x)
            page.locator(inspector).screenshot(path=str(shot))
        finally:
            ctx.close()
    assert after_x != before_x, "the 3D figure did not change when the flexion slider moved"
    assert float(after_text) > float(before_text), f"BMC angle term {before_text} -> {after_text}"
    assert shot.stat().st_size > 20_000
    if os.environ.get("BMC_SCREENSHOT_TO"):  # refresh the README's picture, on request only
        target = Path(os.environ["BMC_SCREENSHOT_TO"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def test_audit_report_links_each_sample_to_its_inspector_page(tmp_path):
    """audit.html stands alone (legend, per-term table, sharp views with red joints) -> a worst sample's
    link -> its standalone inspector page, drawn by plotly offline, filling the window, with a link
    back. ``BMC_AUDIT_SCREENSHOTS_TO=DIR`` copies the two screenshots there (tests/screenshots/ holds the
    committed ones)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    import torch

    from bmclib.audit import audit, write_audit
    from bmclib.data.synth import generate_batch

    from bmclib.biomech import compose, decompose

    xyz = generate_batch("target", 6, 64, torch.Generator().manual_seed(3)).xyz.double()
    xyz[:2] = compose(decompose(xyz[:2]).with_angle("middle", 2, flexion=-0.8))  # middle DIPs hyperextended
    write_audit(audit(xyz.numpy()), tmp_path / "audit", "six hands", worst=2)
    shots = {"report": tmp_path / "audit_report.png", "sample": tmp_path / "audit_sample.png"}
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
                                                   args=FLAGS, viewport={"width": 1200, "height": 800})
        try:
            page = ctx.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((tmp_path / "audit" / "audit.html").as_uri())
            assert page.locator(".chip").count() == 5  # the finger legend
            page.click("text=Every term")  # the per-term table, folded
            assert page.locator("details table tr").count() == 44 and page.locator("details table").is_visible()
            widths = page.eval_on_selector_all("img.views", "els => els.map(e => e.naturalWidth)")
            assert len(widths) == 2 and min(widths) >= 800, widths  # two sharp views per worst sample
            assert "reference bone" in page.text_content("body") and page.locator(".red").count() >= 1
            page.screenshot(path=str(shots["report"]), full_page=True)
            page.click("text=open sample 0 in the inspector's view")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
            assert page.url.endswith("audit_samples/sample_0.html")
            assert page.locator(".gl-container, .scene canvas, canvas").count() > 0  # the 3D hand
            menu = page.locator(".updatemenu-header-group")
            assert menu.count() == 1 and "middle_dip" in menu.text_content()  # opens on the joint furthest outside
            assert "sample 0" in page.locator(".gtitle").text_content() and not errors, errors
            box = page.locator(".js-plotly-plot").bounding_box()
            assert box["width"] >= 0.9 * 1200 - 40 and box["height"] >= 500, box  # fills the window, not clipped
            page.screenshot(path=str(shots["sample"]))
            page.click("text=back to the audit")
            assert page.url.endswith("audit.html#sample-0")
        finally:
            ctx.close()
    assert all(f.stat().st_size > 20_000 for f in shots.values())
    if os.environ.get("BMC_AUDIT_SCREENSHOTS_TO"):  # refresh the committed pictures, on request only
        target = Path(os.environ["BMC_AUDIT_SCREENSHOTS_TO"])
        target.mkdir(parents=True, exist_ok=True)
        for f in shots.values():
            shutil.copyfile(f, target / f.name)
