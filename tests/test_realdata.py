"""Converters of the real data sets on format-exact fixtures, FreiHAND scoring, audit, fit-limits."""
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from bmclib import skeleton as sk
from bmclib.audit import TERM_NAMES, TERM_UNITS, audit, write_audit
from bmclib.predictions import load_predictions, read_pred_json, write_pred_json
from bmclib.biomech import decompose
from bmclib.bench.cli import main
from bmclib.data.cache import PreparedCache
from bmclib.data.freihand import freihand_to_cache
from bmclib.data.ho3d import ho3d_to_cache
from bmclib.data.rhd import rhd_to_cache
from bmclib.data.synth import generate_batch
from bmclib.bench.timing import freihand_keypoint_scores_loop
from bmclib.scoring import freihand_keypoint_scores

from conftest import project_np


# ---------------------------------------------------------------- FreiHAND
def test_freihand_versions_share_annotations(freihand, tmp_path):
    root, b = freihand
    cache = PreparedCache(freihand_to_cache(root, tmp_path / "c", progress=False))
    assert len(cache) == 12 and cache.size == 224
    ann = cache.annotations
    assert ann["source_index"].tolist() == list(range(12))
    for v in range(4):
        assert np.allclose(ann["xyz"][3 * v:3 * v + 3], b.xyz[:3].numpy(), atol=1e-7)
    assert np.abs(ann["uv"] - project_np(ann["xyz"], ann["K"])).max() < 1e-3
    with Image.open(root / "training" / "rgb" / "00000007.jpg") as im:
        assert np.array_equal(np.asarray(im), cache[7]["image"])
    only_v2 = PreparedCache(freihand_to_cache(root, tmp_path / "v2", versions=[2], progress=False))
    assert only_v2.annotations["source_index"].tolist() == [6, 7, 8]
    with pytest.raises(ValueError, match="versions"):
        freihand_to_cache(root, tmp_path / "v9", versions=[9], progress=False)


def test_freihand_evaluation_without_xyz(freihand, tmp_path):
    root, _ = freihand
    with pytest.raises(ValueError, match="no evaluation_xyz.json"):
        freihand_to_cache(root, tmp_path / "e", "evaluation", progress=False)


def test_freihand_missing_folder_names_the_path(tmp_path):
    (tmp_path / "fh").mkdir()
    with pytest.raises(FileNotFoundError, match=r"expected .*fh/training_K.json"):
        freihand_to_cache(tmp_path / "fh", tmp_path / "c", progress=False)


# ---------------------------------------------------------------- RHD
def test_rhd_conversion_reorders_mirrors_and_crops(rhd, tmp_path):
    root, b = rhd
    cache = PreparedCache(rhd_to_cache(root, tmp_path / "rhd", size=128, progress=False))
    ann = cache.annotations
    assert ann["side"].tolist() == [0, 1, 1]
    # left hands came back as the right hands they were mirrored from: same 3D, same angles
    assert np.allclose(ann["xyz"], b.xyz.numpy(), atol=1e-6)
    d_conv = decompose(torch.from_numpy(ann["xyz"].astype(np.float64)))
    assert torch.allclose(d_conv.angles, decompose(b.xyz).angles, atol=1e-4)
    assert np.array_equal(ann["visible"], b.visible.numpy())
    assert np.abs(ann["uv"] - project_np(ann["xyz"], ann["K"])).max() < 1e-2  # float32 annotations
    # the crop frames the hand: visible keypoints inside the 128 px image
    uv_vis = ann["uv"][ann["visible"]]
    assert (uv_vis > -0.5).all() and (uv_vis < 127.5).all()
    # and its pixels: the keypoints land on the hand, not on the background
    img = cache[1]["image"].astype(float)
    px = np.clip(ann["uv"][1].round().astype(int), 0, 127)
    bg = np.asarray(Image.open(root / "training" / "color" / "00001.png"))[0, 0].astype(float)
    on_hand = [np.abs(img[y, x] - bg).sum() > 30 for (x, y), v in zip(px, ann["visible"][1]) if v]
    assert np.mean(on_hand) > 0.8


def test_rhd_bad_input(rhd, tmp_path):
    root, _ = rhd
    with pytest.raises(FileNotFoundError, match="anno_evaluation.pickle"):
        rhd_to_cache(root, tmp_path / "x", "evaluation", progress=False)
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    raw = (bad / "training" / "anno_training.pickle").read_bytes()
    (bad / "training" / "anno_training.pickle").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cannot be read"):
        rhd_to_cache(bad, tmp_path / "y", progress=False)
    with open(root / "training" / "anno_training.pickle", "rb") as f:
        anno = pickle.load(f)
    anno[1]["xyz"] = anno[1]["xyz"][:21]
    with open(bad / "training" / "anno_training.pickle", "wb") as f:
        pickle.dump(anno, f)
    with pytest.raises(ValueError, match=r"sample 1 'xyz' has shape \(21, 3\), expected \(42, 3\)"):
        rhd_to_cache(bad, tmp_path / "z", progress=False)
    del anno[1]["xyz"]
    with open(bad / "training" / "anno_training.pickle", "wb") as f:
        pickle.dump(anno, f)
    with pytest.raises(ValueError, match="lacks 'xyz'"):
        rhd_to_cache(bad, tmp_path / "w", progress=False)


# ---------------------------------------------------------------- HO-3D
def test_ho3d_train_and_root_only_evaluation(ho3d, tmp_path):
    root, xyz, K = ho3d
    train = PreparedCache(ho3d_to_cache(root, tmp_path / "tr", "train", size=96, progress=False))
    ann = train.annotations
    assert np.allclose(ann["xyz"], xyz[:2], atol=1e-6)  # OpenGL -> camera axes and MANO -> F order
    assert np.abs(ann["uv"] - project_np(ann["xyz"], ann["K"])).max() < 1e-2
    assert ann["has_3d"].all() and ann["visible"].mean() > 0.9
    ev = PreparedCache(ho3d_to_cache(root, tmp_path / "ev", "evaluation", size=96, progress=False))
    a = ev.annotations
    assert not a["has_3d"].any() and np.isnan(a["uv"]).all()
    assert np.allclose(a["xyz"][0, 0], xyz[2, 0], atol=1e-6) and np.isnan(a["xyz"][0, 1:]).all()
    assert ev.meta["source"]["labels"] == "root-only"


def test_ho3d_bad_input(ho3d, tmp_path):
    import shutil

    root, _, _ = ho3d
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    meta_path = bad / "train" / "ABF10" / "meta" / "0001.pkl"
    with open(meta_path, "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    meta["handJoints3D"] = meta["handJoints3D"][:20]
    with open(meta_path, "wb") as f:
        pickle.dump(meta, f)
    with pytest.raises(ValueError, match=r"0001.pkl: handJoints3D has shape \(20, 3\)"):
        ho3d_to_cache(bad, tmp_path / "c1", "train", progress=False)
    del meta["camMat"]
    with open(meta_path, "wb") as f:
        pickle.dump(meta, f)
    with pytest.raises(ValueError, match="missing key 'camMat'"):
        ho3d_to_cache(bad, tmp_path / "c2", "train", progress=False)
    meta_path.write_bytes(b"\x80\x02}q")  # truncated pickle
    with pytest.raises(ValueError, match="cannot be read"):
        ho3d_to_cache(bad, tmp_path / "c3", "train", progress=False)
    meta_path.unlink()
    with pytest.raises(FileNotFoundError, match="0001.pkl"):
        ho3d_to_cache(bad, tmp_path / "c4", "train", progress=False)
    (bad / "train.txt").write_text("ABF10-0000\n")
    with pytest.raises(ValueError, match="sequence"):
        ho3d_to_cache(bad, tmp_path / "c5", "train", progress=False)


# ---------------------------------------------------------------- FreiHAND scoring
def test_vectorised_scores_equal_the_per_sample_loop():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(300, 21, 3)) * 0.05 + [0, 0, 0.6]
    pred = gt + rng.normal(size=gt.shape) * 0.012
    pred[7] = pred[7] * [-1, 1, 1]  # a mirrored prediction: the alignment may reflect
    pred[8] = gt[8]  # a perfect one
    fast, slow = freihand_keypoint_scores(gt, pred), freihand_keypoint_scores_loop(gt, pred)
    for k in slow:
        assert fast[k] == pytest.approx(slow[k], abs=1e-9), k
    assert 0 < fast["xyz_al_mean3d"] < fast["xyz_mean3d"]
    zero = freihand_keypoint_scores(gt, np.zeros_like(gt))
    assert zero["xyz_auc3d"] == 0.0 and zero["xyz_mean3d"] > 50  # ~60 cm away
    with pytest.raises(ValueError, match="same shape"):
        freihand_keypoint_scores(gt, pred[:5])


def test_pred_json_round_trip_and_errors(tmp_path):
    xyz = np.random.default_rng(1).normal(size=(4, 21, 3))
    path = write_pred_json(tmp_path / "pred.json", xyz)
    back, verts = read_pred_json(path)
    assert np.allclose(back, xyz) and verts.shape == (4, 778, 3)
    (tmp_path / "bad.json").write_text(json.dumps([xyz[:, :20].tolist(), []]))
    with pytest.raises(ValueError, match=r"field 'xyz_list': shape \(4, 20, 3\)"):
        read_pred_json(tmp_path / "bad.json")
    (tmp_path / "one.json").write_text(json.dumps(xyz.tolist()))  # a plain list of poses: read as such
    plain, no_verts = read_pred_json(tmp_path / "one.json")
    assert np.allclose(plain, xyz) and no_verts is None
    (tmp_path / "three.json").write_text(json.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="expected a list \\[xyz_list, verts_list\\] or a list of poses .N x 21 x 3.,"
                                         " got a list of length 3"):
        read_pred_json(tmp_path / "three.json")


def test_eval_freihand_cli(freihand, tmp_path, capsys):
    root, b = freihand
    gt = b.xyz[:3].numpy()
    write_pred_json(tmp_path / "pred.json", gt + 0.005)
    assert main(["eval-freihand", str(root), str(tmp_path / "pred.json"), "--split", "training",
                 "--out", str(tmp_path / "rep")]) == 0
    lines = (tmp_path / "rep" / "scores.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["xyz_mean3d", "xyz_auc3d", "xyz_al_mean3d", "xyz_al_auc3d"]
    assert float(lines[0].split(":")[1]) == pytest.approx(0.5 * np.sqrt(3), rel=1e-6)  # 5 mm on each axis, in cm
    assert (tmp_path / "rep" / "pck.png").stat().st_size > 1000
    assert main(["eval-freihand", str(root), "zero", "--split", "training", "--out", str(tmp_path / "z")]) == 0
    assert main(["eval-freihand", str(root), str(tmp_path / "pred.json"), "--out", str(tmp_path / "e")]) == 2
    assert "evaluation_xyz.json" in capsys.readouterr().err


# ---------------------------------------------------------------- audit and fit-limits
def test_audit_counts_implausible_poses(tmp_path):
    b = generate_batch("target", 20, 64, torch.Generator().manual_seed(2))
    good = b.xyz.numpy()
    res = audit(good)
    assert res["implausible_poses"] == 0.0 and res["n"] == 20
    bad = good.copy()
    bad[:5, 8] = bad[:5, 7] + 3 * (bad[:5, 7] - bad[:5, 6])  # index fingertips stretched
    res_bad = audit(bad)
    assert res_bad["implausible_poses"] == pytest.approx(0.25)
    broken = {TERM_NAMES[i] for i, t in enumerate(res_bad["term_rate"]) if t > 0}
    assert "length index_dip->index_tip" in broken
    assert set(np.argsort(-res_bad["total"])[:5]) == {0, 1, 2, 3, 4}  # the stretched ones are the worst
    # real units: the tip bone is now 3x the middle phalanx, several times its own typical length
    k = TERM_NAMES.index("length index_dip->index_tip")
    assert TERM_UNITS[k] == "% length" and 150 < res_bad["worst_excess"][k] < 500
    assert res_bad["implausible_poses_tol"] == pytest.approx(0.25)
    assert res_bad["term_rate_tol"][k] == pytest.approx(0.25)
    # the tolerance decides the headline: 0 gives the strict rates, a huge one nothing
    strict = audit(bad, tolerance={"deg": 0.0, "% length": 0.0, "% range": 0.0})
    assert strict["implausible_poses_tol"] == strict["implausible_poses"]
    assert audit(bad, tolerance={"deg": 1e6, "% length": 1e6, "% range": 1e6})["implausible_poses_tol"] == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        audit(bad, tolerance={"deg": -1.0})
    md = write_audit(res_bad, tmp_path / "a", worst=5, pred_path="p.json")
    text = md.read_text()
    assert "poses with a term outside its limits by more than the tolerance: **25.0%**" in text
    assert "strictly (any excess at all): 25.0% of poses" in text
    assert all(f"| {i} |" in text for i in range(5))
    csv_rows = (tmp_path / "a" / "audit.csv").read_text().splitlines()
    assert len(csv_rows) == 21 and "length index_dip->index_tip (% length)" in csv_rows[0]
    assert csv_rows[1].split(",")[2] == "length index_dip->index_tip"  # sample 0's worst term
    page = (tmp_path / "a" / "audit.html").read_text()
    assert all(f'id="sample-{i}"' in page for i in range(5)) and page.count("data:image/png;base64,") == 5
    assert 'load_predictions(&quot;p.json&quot;)[0]' in page and "PoseInspector" in page  # HTML-escaped code
    # each worst sample links to its inspector page, which draws that pose and opens on its worst joint
    assert all(f'href="audit_samples/sample_{i}.html"' in page for i in range(5))
    sample = (tmp_path / "a" / "audit_samples" / "sample_0.html").read_text()
    assert 'src="plotly.min.js"' in sample and (tmp_path / "a" / "audit_samples" / "plotly.min.js").is_file()
    assert "sample 0" in sample and "index_dip" in sample
    write_pred_json(tmp_path / "p.json", bad)
    np.savez(tmp_path / "p.npz", xyz=bad)
    for p in ("p.json", "p.npz"):
        assert np.allclose(load_predictions(tmp_path / p), bad)
    assert main(["audit", str(tmp_path / "p.json"), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "audit.md").is_file()
    assert main(["audit", str(tmp_path / "missing.json")]) == 2


def test_audit_side_and_the_left_hand_hint(tmp_path, capsys):
    right = generate_batch("target", 20, 64, torch.Generator().manual_seed(2)).xyz.numpy()
    left = sk.mirror_joints(right)  # the same hands, as left hands
    as_right = audit(left)
    assert as_right["implausible_poses"] > 0.5 and "--side left" in as_right["side_hint"]
    as_left = audit(left, side="left")  # mirrored back: exactly the right hands' audit
    assert as_left["implausible_poses"] == audit(right)["implausible_poses"] == 0.0
    assert as_left["side_hint"] == "" and np.array_equal(as_left["term_rate"], audit(right)["term_rate"])
    np.save(tmp_path / "left.npy", left)
    assert main(["audit", str(tmp_path / "left.npy"), "--out", str(tmp_path / "a")]) == 0
    assert "are they left hands?" in capsys.readouterr().err
    assert "are they left hands?" in (tmp_path / "a" / "audit.md").read_text()
    assert main(["audit", str(tmp_path / "left.npy"), "--side", "left", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr()
    assert "(left hands): 0.0% with a term outside" in out.out and "are they" not in out.err
    with pytest.raises(ValueError, match="side must be"):
        audit(right, side="both")


def test_audit_warns_about_degenerate_limits(tmp_path, capsys):
    from dataclasses import replace

    from bmclib.audit import degenerate_intervals
    from bmclib.limits import BMCLimits

    lim = BMCLimits.default()
    assert degenerate_intervals(lim) == []  # the reference bone's [1, 1] is one by definition, not degenerate
    curv = lim.root_curvature.copy()
    curv[0] = 0.0  # benchmark v1's thumb-index curvature, fitted on a planar palm
    bad = replace(lim, root_curvature=curv)
    assert degenerate_intervals(bad) == ["curvature thumb-index"]
    bad.save(tmp_path / "v1.json")
    np.save(tmp_path / "p.npy", generate_batch("target", 8, 64, torch.Generator().manual_seed(2)).xyz.numpy())
    assert main(["audit", str(tmp_path / "p.npy"), "--limits", str(tmp_path / "v1.json"), "--out", str(tmp_path)]) == 0
    assert "degenerate (zero-width) limit intervals: curvature thumb-index" in capsys.readouterr().err
    assert "degenerate (zero-width) intervals: curvature thumb-index" in (tmp_path / "audit.md").read_text()


def test_fit_limits_cli_from_npy_and_cache(tmp_path, capsys):
    b = generate_batch("source", 40, 64, torch.Generator().manual_seed(3))
    np.save(tmp_path / "j.npy", b.xyz.numpy())
    assert main(["fit-limits", str(tmp_path / "j.npy"), "--out", str(tmp_path / "l.json")]) == 0
    assert (tmp_path / "l.png").stat().st_size > 1000
    from bmclib.limits import BMCLimits

    lim = BMCLimits.load(tmp_path / "l.json")
    from bmclib.losses import plausible

    assert plausible(b.xyz, lim).float().mean() > 0.9
    assert main(["fit-limits", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.json")]) == 2
    assert "nothing" in capsys.readouterr().err


# ---------------------------------------------------------------- the real-data recipe
def test_freihand_resize_keeps_labels_on_the_hand(freihand, tmp_path):
    """--size: the images shrink and K follows, so the projected labels land where the hand is."""
    root, b = freihand
    full = PreparedCache(freihand_to_cache(root, tmp_path / "full", versions=[0], progress=False))
    small = PreparedCache(freihand_to_cache(root, tmp_path / "small", versions=[0], progress=False, size=64))
    assert small.size == 64 and full.size == 224
    k = 64 / 224
    np.testing.assert_allclose(small.annotations["uv"], (full.annotations["uv"] + 0.5) * k - 0.5, atol=1e-4)
    np.testing.assert_allclose(small.annotations["xyz"], full.annotations["xyz"])  # the camera frame is unchanged
    # the resized images show the hand where the resized labels say: the fixture's hand masks, read at the
    # keypoints, agree between the full images and the resized ones
    for i in range(3):
        m_full = b.masks[i].numpy() > 127
        m_small = np.asarray(Image.fromarray(b.masks[i].numpy()).resize((64, 64), Image.Resampling.BILINEAR)) > 127
        at = lambda m, uv: m[np.clip(np.round(uv[:, 1]).astype(int), 0, m.shape[0] - 1),  # noqa: E731
                             np.clip(np.round(uv[:, 0]).astype(int), 0, m.shape[1] - 1)]
        on_full, on_small = at(m_full, full.annotations["uv"][i]), at(m_small, small.annotations["uv"][i])
        assert on_full.mean() > 0.5 and (on_full == on_small).mean() >= 0.85


@pytest.mark.slow
def test_real_data_recipe_end_to_end(rhd, freihand, tmp_path):
    """data_scripts/real_data_recipe.sh on the RHD and FreiHAND fixtures with the tiny preset: convert,
    fit limits on RHD, train without and with BMC, predict FreiHAND's evaluation split, score it."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    rhd_root, _ = rhd
    fh_src, b = freihand
    fh = tmp_path / "FreiHAND"
    shutil.copytree(fh_src, fh)
    (fh / "evaluation_xyz.json").write_text(json.dumps(b.xyz[3:5].numpy().tolist()))  # the 2022 archive's labels
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "BMC": f"{sys.executable} -m bmclib.cli", "PATH": f"{Path(sys.executable).parent}:"
           + os.environ["PATH"], "DEVICE": "cpu"}
    r = subprocess.run(["bash", str(repo / "data_scripts" / "real_data_recipe.sh"), str(rhd_root), str(fh),
                        str(tmp_path / "out"), "tiny"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    limits = json.loads((tmp_path / "out" / "limits_rhd.json").read_text())
    assert "rhd_training" in json.dumps(limits["meta"])  # fitted on RHD, never on FreiHAND
    for run in ("no_bmc", "bmc"):
        xyz, verts = read_pred_json(tmp_path / "out" / run / "pred.json")
        assert xyz.shape == (2, 21, 3) and np.isfinite(xyz).all()
        assert (xyz[:, :, 2] > 0).all()  # absolute camera coordinates, in front of the camera
        scores = dict(line.split(":") for line in (tmp_path / "out" / run / "scores.txt").read_text().splitlines())
        assert set(scores) == {"xyz_mean3d", "xyz_auc3d", "xyz_al_mean3d", "xyz_al_auc3d"}
        assert np.isfinite([float(v) for v in scores.values()]).all()
    cfg = torch.load(tmp_path / "out" / "runs" / "bmc" / "checkpoint.pt", weights_only=True)["config"]
    assert cfg["use_bmc"] and cfg["limits"].endswith("limits_rhd.json")
    assert not torch.load(tmp_path / "out" / "runs" / "no_bmc" / "checkpoint.pt", weights_only=True)["config"]["use_bmc"]


def test_mediapipe_reader_sides_and_errors(tmp_path, capsys):
    """MediaPipe Hands output (Tasks API and legacy), the side of each hand from its handedness field, and
    named errors for wrong joint counts, NaN, unknown labels and mismatched counts."""
    from bmclib.predictions import read_mediapipe

    right = generate_batch("target", 4, 64, torch.Generator().manual_seed(2)).xyz.numpy()
    left = sk.mirror_joints(right)
    marks = lambda x: [{"x": float(p[0]), "y": float(p[1]), "z": float(p[2])} for p in x]  # noqa: E731
    cat = lambda name: [{"category_name": name, "score": 0.97, "index": 0}]  # noqa: E731
    tasks = [{"handedness": [cat("Right"), cat("Left")], "hand_world_landmarks": [marks(right[0]), marks(left[1])]},
             {"handedness": [], "hand_world_landmarks": []},
             {"handedness": [cat("Left")], "hand_world_landmarks": [[list(map(float, p)) for p in left[2]]]}]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    xyz, sides = read_mediapipe(tmp_path / "tasks.json")
    assert sides == ["right", "left", "left"] and np.allclose(xyz[1], left[1])
    assert main(["audit", str(tmp_path / "tasks.json"), "--out", str(tmp_path / "a")]) == 0  # --side auto
    out = capsys.readouterr()
    assert "1 right, 2 left (from the handedness field) hands): 0.0%" in out.out
    assert "are they" not in out.err
    # the legacy solution labels a mirrored (selfie) view: its landmarks are of the other side than the label
    legacy = {"multi_handedness": [{"classification": [{"label": "Left", "score": 0.9, "index": 0}]}],
              "multi_hand_world_landmarks": [{"landmark": marks(right[3])}]}
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    assert read_mediapipe(tmp_path / "legacy.json")[1] == ["right"]
    # forcing the wrong side shows in the numbers and the hint
    assert main(["audit", str(tmp_path / "tasks.json"), "--side", "right", "--out", str(tmp_path / "b")]) == 0
    assert "0.0%" not in capsys.readouterr().out.split("hands):")[1][:8]
    bad_cases = {
        "count": ({"handedness": [cat("Right")], "hand_world_landmarks": [marks(right[0])[:20]]}, "expected 21 landmarks"),
        "nan": ({"handedness": [cat("Right")], "hand_world_landmarks": [marks(right[0])[:20] + [{"x": "nan", "y": 0, "z": 0}]]},
                "NaN"),
        "label": ({"handedness": [cat("Up")], "hand_world_landmarks": [marks(right[0])]}, "'Left' or 'Right', got 'Up'"),
        "mismatch": ({"handedness": [cat("Right"), cat("Left")], "hand_world_landmarks": [marks(right[0])]},
                     "2 handedness entries for 1 hands"),
    }
    for name, (frame, msg) in bad_cases.items():
        f = tmp_path / f"bad_{name}.json"
        f.write_text(json.dumps([frame]))
        with pytest.raises(ValueError, match=msg) as e:
            read_mediapipe(f)
        assert "frame 0" in str(e.value) and f.name in str(e.value), name
        assert main(["audit", str(f), "--format", "mediapipe", "--out", str(tmp_path / name)]) == 2
        assert not (tmp_path / name / "audit.md").exists()
    capsys.readouterr()


def test_mano_order_reads_into_ours():
    b = generate_batch("target", 3, 64, torch.Generator().manual_seed(5)).xyz.numpy()
    mano = sk.reorder(b, sk.F_TO_HO3D)  # MANO's 16 joints, then tips thumb..little
    assert np.array_equal(sk.from_mano(mano), b)
    assert sk.JOINT_NAMES[sk.MANO_TO_F.index(16)] == "thumb_tip" and sk.MANO_TO_F[5:8] == (1, 2, 3)
