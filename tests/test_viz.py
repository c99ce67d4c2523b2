"""Pictures and the inspector's logic, without a browser: slider -> compose -> BMC readout."""
import numpy as np
import pytest
import torch

from bmclib import skeleton as sk
from bmclib.biomech import decompose
from bmclib.handmodel import template_pose
from bmclib.limits import BMCLimits
from bmclib.viz.inspector import ANGLE_JOINTS, PoseState, PredictionSet


@pytest.fixture()
def pose():
    from bmclib.data.synth import sample_keypoints

    xyz = sample_keypoints("target", 1, generator=torch.Generator().manual_seed(3)).xyz[0]
    return xyz - xyz[0]


def test_pose_state_angle_edit_recomposes_and_flags_the_joint(pose):
    s = PoseState(pose)
    assert np.allclose(s.joints.numpy(), pose.numpy(), atol=1e-12)
    before = s.readout()
    s.set_angle("ring", 0, flexion_deg=-80.0)  # ring MCP bent far backwards
    assert np.degrees(float(decompose(s.joints).angles[3, 0, 0])) == pytest.approx(-80.0, abs=1e-9)
    after = s.readout()
    assert after["angle"] > before["angle"] and after["total"] > before["total"]
    bad = s.violating_joints()
    assert bad[sk.JOINT_NAMES.index("ring_mcp")]
    assert s.violating_angles()[9]  # ring MCP is the 10th angle joint
    moved = (s.joints - pose).norm(dim=-1).numpy() > 1e-9
    assert [sk.JOINT_NAMES[i] for i in np.flatnonzero(moved)] == ["ring_pip", "ring_dip", "ring_tip"]
    s.reset()
    assert s.readout() == pytest.approx(before)


def test_pose_state_length_edit_drives_the_bone_length_term(pose):
    s = PoseState(pose)
    b = sk.bone_index(6, 7)  # index PIP -> DIP
    s.set_length(b, float(s.decomposition.bone_lengths[b]) * 2.5)
    assert s.readout()["bone_length"] > 0
    assert s.violating_joints()[7]
    with pytest.raises(ValueError, match="bone must be"):
        s.set_length(20, 1.0)
    with pytest.raises(ValueError, match=r"expected \(21, 3\)"):
        PoseState(torch.zeros(20, 3))


def test_angle_joints_are_the_proximal_joints_of_the_angle_bones():
    assert [sk.JOINT_NAMES[j] for j in ANGLE_JOINTS] == list(sk.ANGLE_JOINT_NAMES)


def _prediction_set(n=6, seed=0):
    rng = np.random.default_rng(seed)
    gt = np.stack([template_pose(dtype=torch.float64).numpy()] * n)
    noise = rng.normal(size=(n, 21, 3)) * 0.002
    noise[2] *= 20  # sample 2 is the worst of run "b"
    preds = {"a": {"xyz": gt + rng.normal(size=(n, 21, 3)) * 0.002, "uv": None}, "b": {"xyz": gt + noise, "uv": None}}
    return PredictionSet(preds, gt, limits=BMCLimits.default())


def test_prediction_set_errors_worst_and_shape_checks():
    d = _prediction_set()
    assert d.errors("b").shape == (6, 21) and d.worst("b", 1)[0] == 2
    with pytest.raises(ValueError, match="run 'x'.*expected \\(6, 21, 3\\)"):
        PredictionSet({"x": {"xyz": np.zeros((5, 21, 3)), "uv": None}}, d.gt_xyz)


def test_prediction_set_from_files_reads_ours_and_freihand_json(tmp_path):
    from bmclib.predictions import write_pred_json

    gt = np.stack([template_pose(dtype=torch.float64).numpy()] * 3)
    np.savez_compressed(tmp_path / "predictions.npz", xyz=gt.astype(np.float32) + 0.001, uv=np.zeros((3, 21, 2), np.float32))
    write_pred_json(tmp_path / "pred.json", gt + 0.002)
    import json

    (tmp_path / "gt_xyz.json").write_text(json.dumps(gt.tolist()))
    d = PredictionSet.from_files({"ours": tmp_path / "predictions.npz", "frei": tmp_path / "pred.json"},
                                 gt_json=tmp_path / "gt_xyz.json")
    assert d.runs == ["ours", "frei"] and d.preds["ours"]["uv"].shape == (3, 21, 2)
    assert d.errors("ours")[:, 1:].max() < 1e-3  # mm: a constant offset is root-relative zero (float32 files)
    with pytest.raises(ValueError, match="ground truth needed"):
        PredictionSet.from_files({"ours": tmp_path / "predictions.npz"})


def test_widgets_follow_their_sliders(pose):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from bmclib.viz.inspector import PoseInspector, PredictionBrowser

    ins = PoseInspector(pose)
    html0, x0 = ins.readout.value, list(ins.fig.data[1].x)  # trace 1 = index finger
    ins.finger.value, ins.joint.value = "index", 1
    ins.flexion.value = 175.0
    assert ins.readout.value != html0 and list(ins.fig.data[1].x) != x0
    assert "outside" in ins.envelope.layout.title.text
    assert ins.state.readout()["angle"] > 0
    ins.bone.value = sk.bone_index(6, 7)
    ins.length.value = 2.0
    assert ins.state.readout()["bone_length"] > 0

    d = _prediction_set()
    br = PredictionBrowser(d, "a", "b")
    x_before = list(br.fig.data[5].x)
    br.order.value = "worst_b"
    br.slider.value = 0
    assert br.sample_index(0) == 2 and "sample 2" in br.info.value
    assert list(br.fig.data[15].x) != x_before
    assert list(br.errors.data[1].y) == pytest.approx(d.errors("b")[2].tolist())


def test_static_figures_write_files(tmp_path, pose):
    from bmclib.viz.static import compare_runs_figure, decomposition_figure, envelope_figure, loss_curves, pose_views, save

    imgs = np.zeros((2, 16, 16, 3), np.uint8)
    figs = {"dec": decomposition_figure(pose), "env": envelope_figure(BMCLimits.default(), pose[None].numpy(), highlight=pose),
            "loss": loss_curves({"r": [{"step": 1, "total": 1.0}, {"step": 2, "total": 0.5}]}),
            "views": pose_views({"ground truth": pose, "p": pose * 1.1}),
            "cmp": compare_runs_figure(imgs, np.stack([pose.numpy()] * 2), {"a": np.stack([pose.numpy()] * 2)})}
    for name, fig in figs.items():
        p = save(fig, tmp_path / f"{name}.png")
        assert p.stat().st_size > 5000, name
    assert not list(tmp_path.glob("*.tmp*"))


def test_with_picture_carries_a_png_and_no_html():
    """Executed notebooks read on GitHub / offline: a plotly figure or a widget comes with a PNG twin,
    and without text/html (which such viewers would pick and show blank)."""
    import base64

    from bmclib.handmodel import template_pose
    from bmclib.viz.plotly3d import hand_figure
    from bmclib.viz.static import WithPicture, pose_views

    pose = template_pose(dtype=torch.float64)
    bundle = WithPicture(hand_figure(pose), pose_views({"hand": pose}))._repr_mimebundle_()
    assert "text/html" not in bundle
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(bundle["application/vnd.plotly.v1+json"]["data"]) == 5  # the five fingers

    class Widget:  # what ipywidgets returns
        def _repr_mimebundle_(self, include=None, exclude=None):
            return {"text/plain": "HBox(children=(...))", "text/html": "<div/>",
                    "application/vnd.jupyter.widget-view+json": {"model_id": "x"}}

    bundle = WithPicture(Widget(), pose_views({"hand": pose}), note="the inspector")._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/png", "application/vnd.jupyter.widget-view+json"}
    assert bundle["text/plain"] == "the inspector"


def test_widget_pictures(pose):
    """The inspector and the browser each give a static picture with their widget (issue 16: executed
    notebooks showed 'HBox(children=...)' where widgets cannot run)."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from bmclib.viz.inspector import PoseInspector, PredictionBrowser

    for obj in (PoseInspector(pose), PredictionBrowser(_prediction_set(), "a", "b")):
        bundle = obj.picture()._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle and len(bundle["image/png"]) > 1000
        assert "HBox" not in bundle["text/plain"] and "interactive in JupyterLab" in bundle["text/plain"]


def test_notebook_progress_bars_end_in_their_final_state(monkeypatch):
    """In a notebook kernel a bar is one text output updated in place (an executed notebook keeps the last
    update: '100%| 10/10'), not a widget stored in its first state ('0%| 0/10')."""
    pytest.importorskip("IPython")
    import IPython.display

    from bmclib import progress

    shown = []

    class Handle:
        def update(self, bundle, raw=False):
            shown[-1] = bundle["text/plain"]

    def display(bundle, raw=False, display_id=False):
        shown.append(bundle["text/plain"])
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    progress.use_display_handles(True)
    try:
        bar = progress.tqdm(total=10, desc="steps", mininterval=0)
        for _ in range(10):
            bar.update(1)
        bar.close()
    finally:
        progress.use_display_handles(False)
    assert len(shown) == 1 and "10/10" in shown[0] and "100%" in shown[0]
    assert type(progress.tqdm(total=1, disable=True)).__module__.startswith("tqdm")  # a terminal: tqdm itself
