"""Bad input, tried as a user with imperfect files would: every variant below goes through the
``bmc`` command line and must exit 2 (no traceback, no silent exit 0) with a message that names
the file and the field, and must leave an output that existed before exactly as it was."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bmclib.bench.cli import main
from bmclib.data.cache import CacheWriter, PreparedCache
from bmclib.data.freihand import freihand_to_cache
from bmclib.data.rhd import rhd_to_cache
from bmclib.data.ho3d import ho3d_to_cache
from bmclib.data.synth import generate_dataset
from bmclib.predictions import write_pred_json


class Payload:
    """What a crafted pickle carries: unpickling it would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tree_digest(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (relative names), for 'unchanged' checks."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def assert_refused(argv, capsys, *must_name: str, keep: Path | None = None, marker: Path | None = None):
    """``argv`` exits 2 naming every string of ``must_name``; ``keep`` is unchanged; no temporary
    folders are left beside it; the payload's ``marker`` was never created."""
    before = tree_digest(keep) if keep is not None else None
    rc, err = run_cli(argv, capsys)
    assert rc == 2, f"exit {rc} for {argv}: {err}"
    for s in must_name:
        assert s in err, f"{s!r} not named in: {err}"
    if keep is not None:
        assert tree_digest(keep) == before, f"{keep} changed"
        assert not list(keep.parent.glob(f".{keep.name}.*")), "temporary folders left behind"
    if marker is not None:
        assert not marker.exists(), "code from a data file ran"
    return err


# ----------------------------------------------------------------------------- FreiHAND
def _json(path: Path):
    return json.loads(path.read_text())


def _dump(path: Path, data) -> None:
    path.write_text(json.dumps(data))


def _set(path: Path, index: tuple, value) -> None:
    data = np.asarray(_json(path), dtype=float)
    data[index] = value
    _dump(path, data.tolist())


FREIHAND_CASES = {
    "xyz NaN": (lambda r: _set(r / "training_xyz.json", (1, 4, 0), np.nan), "training_xyz.json", "'xyz'", "sample 1"),
    "xyz Infinity": (lambda r: _set(r / "training_xyz.json", (2, 0, 2), np.inf), "training_xyz.json", "'xyz'",
                     "infinite"),
    "points behind the camera": (lambda r: _set(r / "training_xyz.json", (0, slice(None), 2), -0.4),
                                 "training_xyz.json", "'xyz'", "behind the camera"),
    "K NaN": (lambda r: _set(r / "training_K.json", (1, 0, 2), np.nan), "training_K.json", "'K'", "sample 1"),
    "K all zero": (lambda r: _set(r / "training_K.json", (2,), 0.0), "training_K.json", "'K'", "focal lengths"),
    "K transposed": (lambda r: _dump(r / "training_K.json", np.swapaxes(np.asarray(_json(r / "training_K.json")), 1,
                                                                          2).tolist()), "training_K.json", "last row"),
    "ragged xyz": (lambda r: _dump(r / "training_xyz.json", [x if i else x[:20] for i, x in
                                                             enumerate(_json(r / "training_xyz.json"))]),
                   "training_xyz.json", "'xyz'", "ragged"),
    "strings in K": (lambda r: _dump(r / "training_K.json", [[["a", 0, 1]] * 3] * 3), "training_K.json", "'K'",
                     "strings"),
    "mapping for scales": (lambda r: _dump(r / "training_scale.json", {"0": 0.01}), "training_scale.json",
                           "'scale'", "mapping"),
    "zero scale": (lambda r: _set(r / "training_scale.json", (0,), 0.0), "training_scale.json", "'scale'",
                   "must be > 0"),
    "scale count": (lambda r: _dump(r / "training_scale.json", _json(r / "training_scale.json")[:2]),
                    "training_scale.json", "expected 3 scales"),
    "non-UTF-8 K": (lambda r: (r / "training_K.json").write_bytes(b"\xff\xfe[1, 2]"), "training_K.json", "UTF-8"),
    "truncated xyz": (lambda r: (r / "training_xyz.json").write_text((r / "training_xyz.json").read_text()[:100]),
                      "training_xyz.json", "not valid JSON"),
    "undecodable image at frame 2": (lambda r: (r / "training" / "rgb" / "00000002.jpg").write_bytes(b"no jpeg"),
                                     "00000002.jpg", "cannot be decoded"),
    "image of the wrong size": (lambda r: Image.new("RGB", (200, 200)).save(r / "training" / "rgb" / "00000005.jpg"),
                                "00000005.jpg", "200x200"),
    "visible of the wrong shape": (lambda r: _dump(r / "training_bmc.json", {"visible": [[1] * 20] * 3, "info": {}}),
                                   "training_bmc.json", "'visible'", "shape"),
    "extras a list": (lambda r: _dump(r / "training_bmc.json", [1, 2]), "training_bmc.json", "mapping"),
}


@pytest.fixture(scope="module")
def freihand_out(freihand, tmp_path_factory):
    """A valid cache converted from the fixture: what a failed ``--force`` must not destroy."""
    out = tmp_path_factory.mktemp("fh_out") / "cache"
    freihand_to_cache(freihand[0], out, progress=False)
    return out


@pytest.mark.parametrize("case", sorted(FREIHAND_CASES))
def test_freihand_bad_input(case, freihand, freihand_out, tmp_path, capsys):
    mutate, *names = FREIHAND_CASES[case]
    root = tmp_path / "fh"
    shutil.copytree(freihand[0], root)
    mutate(root)
    assert_refused(["prepare-freihand", root, "--out", freihand_out, "--force"], capsys, *names, keep=freihand_out)
    PreparedCache(freihand_out)  # still readable


def test_refusal_without_force_names_the_flag(freihand, freihand_out, capsys):
    assert_refused(["prepare-freihand", freihand[0], "--out", freihand_out], capsys, "--force", keep=freihand_out)


def test_a_failed_write_keeps_the_previous_cache_and_cleans_up(freihand_out, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(freihand_out, out)
    before = tree_digest(out)
    img = np.zeros((2, 8, 8, 3), np.uint8)
    ann = dict(uv=np.zeros((2, 21, 2)), xyz=np.full((2, 21, 3), 0.5), K=np.tile(np.eye(3), (2, 1, 1)),
               visible=np.ones((2, 21), bool), side=np.zeros(2, np.uint8), has_3d=np.ones(2, bool),
               scale=np.ones(2), source_index=np.arange(2))
    with pytest.raises(RuntimeError, match="killed"):
        with CacheWriter(out, 4, 8, {}, overwrite=True) as w:
            w.write(0, img, **ann)
            raise RuntimeError("killed half-way")
    assert tree_digest(out) == before and not list(tmp_path.glob(".c.*"))
    with CacheWriter(out, 2, 8, {}, overwrite=True) as w:  # a complete write replaces it
        w.write(0, img, **ann)
    assert len(PreparedCache(out)) == 2 and PreparedCache(out).verify_images()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a prepared cache"):
        CacheWriter(tmp_path / "other", 2, 8, {}, overwrite=True)


# ----------------------------------------------------------------------------- RHD
def _rhd_edit(edit):
    def mutate(root: Path, marker: Path):
        path = root / "training" / "anno_training.pickle"
        with open(path, "rb") as f:
            anno = pickle.load(f)
        anno = edit(anno, marker)
        with open(path, "wb") as f:
            pickle.dump(anno, f)
    return mutate


def _with(anno, i, key, fn):
    anno[i][key] = fn(np.array(anno[i][key]))
    return anno


def _nan_at(a, idx):
    a = a.astype(float)
    a[idx] = np.nan
    return a


RHD_CASES = {
    "uv NaN": (_rhd_edit(lambda a, m: _with(a, 1, "uv_vis", lambda x: _nan_at(x, (5, 0)))), "anno_training.pickle",
               "'uv_vis'", "sample 1"),
    "K NaN": (_rhd_edit(lambda a, m: _with(a, 0, "K", lambda x: _nan_at(x, (0, 0)))), "anno_training.pickle", "'K'",
              "sample 0"),
    "K zero": (_rhd_edit(lambda a, m: _with(a, 2, "K", lambda x: x * 0)), "anno_training.pickle", "'K'",
               "focal lengths"),
    "hand behind the camera": (_rhd_edit(lambda a, m: _with(a, 0, "xyz", lambda x: x * [1, 1, -1])),
                               "anno_training.pickle", "'xyz (right hand)'", "behind the camera"),
    "string sample ids": (_rhd_edit(lambda a, m: {str(k): v for k, v in a.items()}), "anno_training.pickle",
                          "sample id '0'"),
    "annotation a list": (_rhd_edit(lambda a, m: list(a.values())), "anno_training.pickle", "non-empty dict"),
    "sample a list": (_rhd_edit(lambda a, m: {**a, 1: [1, 2, 3]}), "anno_training.pickle", "sample 1",
                      "expected a dict"),
    "uv a string": (_rhd_edit(lambda a, m: _with(a, 2, "uv_vis", lambda x: "abc")), "anno_training.pickle",
                    "'uv_vis'", "string"),
    "pickled payload": (_rhd_edit(lambda a, m: {**a, 0: Payload(m)}), "anno_training.pickle", "refused to load"),
    "truncated pickle": (lambda r, m: (r / "training" / "anno_training.pickle").write_bytes(
        (r / "training" / "anno_training.pickle").read_bytes()[:200]), "anno_training.pickle", "cannot be read"),
    "colour image of the wrong size": (lambda r, m: Image.new("RGB", (300, 300)).save(r / "training" / "color" /
                                                                                      "00001.png"),
                                       "00001.png", "sample 1", "300x300"),
    "mask of the wrong size": (lambda r, m: Image.new("L", (320, 240)).save(r / "training" / "mask" / "00002.png"),
                               "00002.png", "sample 2", "320x240"),
    "undecodable colour image": (lambda r, m: (r / "training" / "color" / "00002.png").write_bytes(b"\x89PNG broken"),
                                 "00002.png", "cannot be decoded"),
}


@pytest.fixture(scope="module")
def rhd_out(rhd, tmp_path_factory):
    out = tmp_path_factory.mktemp("rhd_out") / "cache"
    rhd_to_cache(rhd[0], out, size=64, progress=False)
    return out


@pytest.mark.parametrize("case", sorted(RHD_CASES))
def test_rhd_bad_input(case, rhd, rhd_out, tmp_path, capsys):
    mutate, *names = RHD_CASES[case]
    root, marker = tmp_path / "rhd", tmp_path / "PAYLOAD_RAN"
    shutil.copytree(rhd[0], root)
    mutate(root, marker)
    assert_refused(["prepare-rhd", root, "--out", rhd_out, "--size", 64, "--force"], capsys, *names, keep=rhd_out,
                   marker=marker)


# ----------------------------------------------------------------------------- HO-3D
def _ho3d_edit(edit, split="train", frame="ABF10/meta/0001.pkl"):
    def mutate(root: Path, marker: Path):
        path = root / split / frame
        with open(path, "rb") as f:
            meta = pickle.load(f, encoding="latin1")
        meta = edit(meta, marker)
        with open(path, "wb") as f:
            pickle.dump(meta, f, protocol=2)
    return mutate


HO3D_CASES = {
    "camMat zero": (_ho3d_edit(lambda m, _: {**m, "camMat": np.zeros((3, 3))}), "train", "0001.pkl", "'camMat'",
                    "focal lengths"),
    "camMat strings": (_ho3d_edit(lambda m, _: {**m, "camMat": [["a"] * 3] * 3}), "train", "0001.pkl", "'camMat'",
                       "strings"),
    "joints NaN": (_ho3d_edit(lambda m, _: {**m, "handJoints3D": _nan_at(m["handJoints3D"], (3, 1))}), "train",
                   "0001.pkl", "'handJoints3D'", "NaN"),
    "joints behind the camera": (_ho3d_edit(lambda m, _: {**m, "handJoints3D": m["handJoints3D"] * [1, 1, -1]}),
                                 "train", "0001.pkl", "'handJoints3D'", "behind the camera"),
    "pickled payload": (_ho3d_edit(lambda m, mk: {**m, "handPose": Payload(mk)}), "train", "0001.pkl",
                        "refused to load"),
    "zero-size bounding box": (_ho3d_edit(lambda m, _: {**m, "handBoundingBox": [10, 10, 10, 40]}, "evaluation",
                                          "SM1/meta/0000.pkl"), "evaluation", "0000.pkl", "'handBoundingBox'",
                               "zero or negative size"),
    "image of the wrong size": (lambda r, m: Image.new("RGB", (320, 240)).save(r / "train" / "ABF10" / "rgb" /
                                                                               "0001.jpg"), "train", "0001.jpg",
                                "320x240"),
    "non-UTF-8 frame list": (lambda r, m: (r / "train.txt").write_bytes(b"ABF10/\xff\xff\n"), "train", "train.txt",
                             "UTF-8"),
}


@pytest.fixture(scope="module")
def ho3d_out(ho3d, tmp_path_factory):
    base = tmp_path_factory.mktemp("ho3d_out")
    out = {s: base / s for s in ("train", "evaluation")}
    for split, path in out.items():
        ho3d_to_cache(ho3d[0], path, split, size=64, progress=False)
    return out


@pytest.mark.parametrize("case", sorted(HO3D_CASES))
def test_ho3d_bad_input(case, ho3d, ho3d_out, tmp_path, capsys):
    mutate, split, *names = HO3D_CASES[case]
    root, marker = tmp_path / "ho3d", tmp_path / "PAYLOAD_RAN"
    shutil.copytree(ho3d[0], root)
    mutate(root, marker)
    out = ho3d_out[split]
    assert_refused(["prepare-ho3d", root, "--out", out, "--split", split, "--size", 64, "--force"], capsys, *names,
                   keep=out, marker=marker)


# ----------------------------------------------------------------------------- predictions
def _pred_nan(path: Path):
    xyz = np.random.default_rng(0).normal(size=(4, 21, 3))
    xyz[2, 7, 1] = np.nan
    path.write_text(json.dumps([xyz.tolist(), []]))  # json writes NaN, as numpy users' dumps do


def _pred_all_nan(path: Path):
    path.write_text(json.dumps([np.full((4, 21, 3), np.nan).tolist(), []]))


PRED_CASES = {
    "only NaN poses in pred.json": ("pred.json", _pred_all_nan, "none of the 4 poses is finite"),
    "no poses in pred.json": ("pred.json", lambda p: p.write_text("[[], []]"), "'xyz_list'", "no poses"),
    "20 joints in pred.json": ("pred.json", lambda p: p.write_text(json.dumps([np.ones((3, 20, 3)).tolist(), []])),
                               "'xyz_list'", "shape"),
    "pred.json a mapping": ("pred.json", lambda p: p.write_text('{"xyz": []}'), "expected a list [xyz_list, verts_list] or a list of poses (N x 21 x 3), got a dict"),
    "ragged pred.json": ("pred.json", lambda p: p.write_text(json.dumps([[[[0, 0, 1]] * 21, [[0, 0]] * 21], []])),
                         "'xyz_list'", "ragged"),
    "inf in .npy": ("pred.npy", lambda p: np.save(p, np.where(np.arange(63).reshape(1, 21, 3) == 5, np.inf,
                                                              np.ones((2, 21, 3)))), "'xyz'", "none of the 2 poses"),
    "string .npy": ("pred.npy", lambda p: np.save(p, np.full((2, 21, 3), "x")), "'xyz'", "strings"),
}


@pytest.mark.parametrize("case", sorted(PRED_CASES))
def test_audit_bad_predictions(case, tmp_path, capsys):
    name, write, *names = PRED_CASES[case]
    pred = tmp_path / name
    write(pred)
    out = tmp_path / "audit"
    out.mkdir()
    (out / "audit.md").write_text("an earlier audit\n")
    assert_refused(["audit", pred, "--out", out], capsys, name, *names, keep=out)


def test_eval_freihand_mismatched_counts(freihand, tmp_path, capsys):
    pred = write_pred_json(tmp_path / "pred.json", np.ones((2, 21, 3)))
    assert_refused(["eval-freihand", freihand[0], pred, "--split", "training", "--out", tmp_path / "s"], capsys,
                   "pred.json", "'xyz_list'", "2 predictions for 3")


def test_audit_leaves_non_finite_poses_out_of_its_rates():
    from bmclib.audit import audit
    from bmclib.handmodel import template_pose

    good = template_pose(dtype=torch.float64).numpy()[None].repeat(3, 0) + [0.0, 0.0, 0.5]
    xyz = np.concatenate([good, np.full((1, 21, 3), np.nan)])
    r, r_good = audit(xyz), audit(good)
    assert r["non_finite"] == 1 and r["implausible_poses"] == r_good["implausible_poses"]
    assert np.array_equal(r["term_rate"], r_good["term_rate"]) and np.isnan(r["total"][3])


# ----------------------------------------------------------------------------- caches
def _meta_edit(key, value):
    def mutate(c: Path):
        meta = json.loads((c / "meta.json").read_text())
        meta[key] = value
        (c / "meta.json").write_text(json.dumps(meta))
    return mutate


def _flip_image_byte(c: Path):
    raw = bytearray((c / "images.u8").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (c / "images.u8").write_bytes(bytes(raw))


CACHE_CASES = {
    "meta.json a list": (lambda c: (c / "meta.json").write_text("[1, 2]"), "meta.json", "mapping"),
    "meta.json n a string": (_meta_edit("n", "ten"), "meta.json", "'n'"),
    "flipped image bytes": (_flip_image_byte, "images.u8", "checksum"),
    "truncated images": (lambda c: (c / "images.u8").write_bytes((c / "images.u8").read_bytes()[:1000]),
                         "images.u8", "truncated"),
    "edited annotations": (lambda c: (c / "annotations.npz").write_bytes((c / "annotations.npz").read_bytes()[:-8]
                                                                          + b"\0" * 8), "annotations.npz", "checksum"),
    "non-UTF-8 meta.json": (lambda c: (c / "meta.json").write_bytes(b"\xff\xfe{}"), "meta.json", "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(CACHE_CASES))
def test_verify_cache_finds_corruption(case, freihand_out, tmp_path, capsys):
    mutate, *names = CACHE_CASES[case]
    c = tmp_path / "cache"
    shutil.copytree(freihand_out, c)
    mutate(c)
    assert_refused(["verify-cache", c], capsys, str(c), *names, keep=c)


def test_verify_cache_passes_a_good_cache(freihand_out, capsys):
    assert main(["verify-cache", str(freihand_out)]) == 0
    assert "image bytes match" in capsys.readouterr().out


# ----------------------------------------------------------------------------- configs
@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust_train")
    generate_dataset(str(root / "source"), "source", 24, 8, seed=0, size=64, progress=False)
    return root


CONFIG_CASES = {
    "steps: ten": ("steps: ten", "steps", "an integer"),
    "batch_size: 8.5": ("batch_size: 8.5", "batch_size", "an integer"),
    "use_bmc: 'no'": ("use_bmc: 'no'", "use_bmc", "true or false"),
    "w_2d: .nan": ("w_2d: .nan", "w_2d", "finite"),
    "negative warm-up": ("warmup: -5", "warmup", ">= 0"),
    "steps: 0": ("steps: 0", "steps", ">= 1"),
    "steps: -5": ("steps: -5", "steps", ">= 1"),
    "checkpoint_every: 0": ("checkpoint_every: 0", "checkpoint_every", ">= 1"),
    "batch_size: 0": ("batch_size: 0", "batch_size", ">= 1"),
    "model not a mapping": ("model: 5", "model", "mapping"),
    "unknown key": ("stepz: 10", "stepz", "unknown config keys"),
    "a list, not a mapping": ("- 1\n- 2", "expected a mapping", ""),
    "unknown preset": ("preset: huge", "preset", "huge"),
    "broken YAML": ("steps: [1, 2", "not valid YAML", ""),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_configs(case, train_data, tmp_path, capsys):
    text, *names = CONFIG_CASES[case]
    cfg = tmp_path / "run.yaml"
    cfg.write_text(("" if text.startswith(("preset", "-")) else "preset: tiny\n") + text + "\n")
    runs = tmp_path / "runs"
    assert_refused(["train", "--config", cfg, "--source", train_data / "source" / "cache" / "training",
                    "--name", "r", "--out", runs], capsys, "run.yaml", *[n for n in names if n])
    assert not runs.exists()  # refused before anything was written


def test_bad_command_line_values(train_data, tmp_path, capsys):
    assert_refused(["train", "--preset", "tiny", "--source", train_data / "source" / "cache" / "training",
                    "--steps", -5, "--out", tmp_path / "runs"], capsys, "config.steps", ">= 1")


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def trained(train_data, tmp_path_factory):
    from bmclib.train import preset, train

    runs = tmp_path_factory.mktemp("robust_runs")
    cfg = preset("tiny", source=str(train_data / "source" / "cache" / "training"), out=str(runs), name="r")
    return train(cfg, progress=False)


def _ck_truncated(p: Path, m: Path):
    p.write_bytes(p.read_bytes()[:1000])


def _ck_random(p: Path, m: Path):
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())


def _ck_missing_keys(p: Path, m: Path):
    torch.save({"model": {}, "step": 3}, p)


def _ck_payload(p: Path, m: Path):
    torch.save({"model": Payload(m), "config": {}, "step": 1}, p)


def _ck_bad_step(p: Path, m: Path):
    ck = torch.load(p, weights_only=True)
    torch.save({**ck, "step": "six"}, p)


CHECKPOINT_CASES = {
    "truncated": (_ck_truncated, "not a readable checkpoint"),
    "random bytes": (_ck_random, "checkpoint"),
    "empty": (lambda p, m: p.write_bytes(b""), "empty checkpoint"),
    "missing keys": (_ck_missing_keys, "lacks"),
    "pickled payload": (_ck_payload, "refused"),
    "step not an integer": (_ck_bad_step, "'step'"),
}


@pytest.mark.parametrize("command", ["evaluate", "train"])
@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_corrupted_checkpoints(case, command, trained, train_data, tmp_path, capsys):
    mutate, what = CHECKPOINT_CASES[case]
    run, marker = tmp_path / "runs" / "r", tmp_path / "PAYLOAD_RAN"
    shutil.copytree(trained, run)
    mutate(run / "checkpoint.pt", marker)
    src = train_data / "source" / "cache"
    if command == "evaluate":
        argv = ["evaluate", run, "--cache", src / "evaluation", "--results", tmp_path / "results"]
    else:  # the same run again: it resumes from its checkpoint
        argv = ["train", "--preset", "tiny", "--source", src / "training", "--name", "r", "--out", tmp_path / "runs"]
    assert_refused(argv, capsys, "checkpoint.pt", what, keep=run, marker=marker)
    assert not (tmp_path / "results").exists()


def test_a_non_finite_loss_stops_training_and_keeps_the_checkpoint(train_data, tmp_path, monkeypatch):
    import bmclib.train as tr

    real = tr.compute_losses

    def poisoned(out, batch, cfg, *a, **k):
        terms = real(out, batch, cfg, *a, **k)
        if poisoned.calls >= 4:  # steps 5 and 6
            terms["total"] = terms["total"] * float("nan")
        poisoned.calls += 1
        return terms
    poisoned.calls = 0
    monkeypatch.setattr(tr, "compute_losses", poisoned)
    cfg = tr.preset("tiny", source=str(train_data / "source" / "cache" / "training"), out=str(tmp_path), name="nan")
    with pytest.raises(FloatingPointError, match="non-finite loss between steps 5 and 5.*step 3 is kept"):
        tr.train(cfg, progress=False)
    ck = torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 3 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


# ----------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_collapsed_bone_has_bounded_gradients(dtype):
    from bmclib import skeleton as sk
    from bmclib.handmodel import template_pose
    from bmclib.limits import BMCLimits
    from bmclib.losses import BMCLoss

    loss = BMCLoss(BMCLimits.default())
    base = template_pose(dtype=torch.float64) + 0.01 * torch.randn(21, 3, generator=torch.Generator().manual_seed(0),
                                                                    dtype=torch.float64)
    worst = 0.0
    for p, c in sk.BONES:
        j = base.clone()
        j[c] = j[p]  # a zero-length bone in an otherwise normal hand
        j = j.to(dtype).requires_grad_(True)
        loss(j[None]).total.sum().backward()
        assert torch.isfinite(j.grad).all()
        worst = max(worst, float(j.grad.abs().max()))
    assert worst < 1e5  # was 1e14-1e26 with the old floors; now about 1 / EPS_DEGENERATE^2


def test_fp16_gradients_saturate_instead_of_overflowing():
    from bmclib.handmodel import template_pose
    from bmclib.limits import BMCLimits
    from bmclib.losses import BMCLoss

    j = template_pose(dtype=torch.float64) * 1e-3 + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    j[10] = j[9]  # a millimetre-sized hand with a collapsed reference bone: gradients far above 65504
    j = j.half().requires_grad_(True)
    BMCLoss(BMCLimits.default())(j[None]).total.sum().backward()
    assert torch.isfinite(j.grad).all() and float(j.grad.abs().max()) == 65504.0


def test_an_empty_batch_is_refused():
    from bmclib.data.loader import Batch
    from bmclib.train import compute_losses, preset

    empty = Batch(torch.zeros(0, 3, 64, 64), torch.zeros(0, 21, 2), torch.zeros(0, 21, 3), torch.zeros(0, 3, 3),
                  torch.zeros(0, dtype=torch.bool), torch.zeros(0))
    with pytest.raises(ValueError, match="empty batch"):  # was total = nan
        compute_losses(None, empty, preset("tiny"), None)


def test_a_failed_synth_force_keeps_the_earlier_data_set(tmp_path, monkeypatch, capsys):
    import bmclib.data.synth as synth

    out = tmp_path / "src"
    generate_dataset(str(out), "source", 12, 4, seed=0, size=64, progress=False)
    before = tree_digest(out)

    def broken(*a, **k):
        raise ValueError("renderer failed half-way")
    monkeypatch.setattr(synth, "generate_batch", broken)
    assert_refused(["synth", "--domain", "source", "--num", 8, "--num-eval", 2, "--size", 64, "--out", out,
                    "--force", "--quiet"], capsys, "half-way", keep=out)
    assert tree_digest(out) == before
    monkeypatch.undo()
    generate_dataset(str(out), "source", 8, 2, seed=0, size=64, progress=False, overwrite=True)  # smaller
    assert len(list((out / "training" / "rgb").glob("*.jpg"))) == 8  # no stale images of the larger set
    assert len(PreparedCache(out / "cache" / "training")) == 8
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("mine")
    with pytest.raises(FileExistsError, match="not a synthetic data set"):
        generate_dataset(str(tmp_path / "mine"), "source", 4, 0, size=64, progress=False, overwrite=True)


# ----------------------------------------------------------------------------- degenerate poses (issue 25)
from hypothesis import given, settings, strategies as st  # noqa: E402

from bmclib.bench.fuzz import FAMILIES, GRAD_BOUND, fuzz_poses, pose_size  # noqa: E402


def _grad(poses: torch.Tensor, dtype: torch.dtype, fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from bmclib.losses import BMCLoss

    x = poses.to(dtype, copy=True).requires_grad_(True)
    total = BMCLoss(reduction="none", fused=fused)(x).total
    g, = torch.autograd.grad(total.sum(), x)
    return total.detach().double(), g.double()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_fuzz_family_has_finite_bounded_gradients(family, dtype, fused):
    poses = fuzz_poses(family, 96, seed=1)
    total, g = _grad(poses, dtype, fused)
    assert torch.isfinite(total).all() and torch.isfinite(g).all(), f"{family} {dtype}: non-finite loss or gradient"
    if dtype != torch.float16:  # float16 gradients saturate at 65504 by design: finite is the promise there
        worst = float((g.norm(dim=-1).amax(-1) * pose_size(poses)).max())
        assert worst < GRAD_BOUND, f"{family} {dtype}: |grad| x size = {worst:.3g}"


@settings(max_examples=25, deadline=None)
@given(family=st.sampled_from(FAMILIES), seed=st.integers(0, 10_000), fused=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_fuzz_gradients_stay_below_the_documented_bound(family, seed, fused, dtype):
    poses = fuzz_poses(family, 8, seed=seed)
    total, g = _grad(poses, dtype, fused)
    assert torch.isfinite(g).all() and torch.isfinite(total).all()
    assert float((g.norm(dim=-1).amax(-1) * pose_size(poses)).max()) < GRAD_BOUND


def _coarse_grid_poses(step: float, scale: float) -> torch.Tensor:
    from bmclib.handmodel import random_poses

    j = random_poses(512, 3, spread=1.0).double() + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    return torch.round(j / step) * step * scale


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("scale", [1e-6, 1.0])
def test_a_grid_quantised_pose_has_finite_gradients(scale, dtype):
    # joints on a 4 cm grid: some bones lie exactly along their frame's y axis, (l_x, l_z) = (0, 0);
    # the fused backward divided by that square (NaN in 24 coordinates) before
    poses = _coarse_grid_poses(0.04, scale)
    for fused in (True, False):
        total, g = _grad(poses, dtype, fused)
        assert torch.isfinite(total).all() and torch.isfinite(g).all(), (fused, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_collapsed_root_and_reference_bones_keep_the_loss_and_gradient_bounded(dtype):
    # all five root bones and the reference bone of zero length: the pose's size fell to the dtype's
    # absolute floor and the loss reached 2e30 (float64) / 2e10 (float32), the gradient 5e30 / 5e10
    poses = fuzz_poses("scale_ref", 64, seed=0)
    for fused in (True, False):
        total, g = _grad(poses, dtype, fused)
        assert float(total.max()) < 1e5
        assert float((g.norm(dim=-1).amax(-1) * pose_size(poses)).max()) < 1e4


def test_a_bone_folded_back_by_pi_has_the_same_gradient_bound_in_float32_and_float64():
    poses = fuzz_poses("fold_pi", 128, seed=0)  # float32 reached 4e6-4e9, float64 ~1
    worst = {dt: float((_grad(poses, dt, True)[1].norm(dim=-1).amax(-1) * pose_size(poses)).max())
             for dt in (torch.float32, torch.float64)}
    assert worst[torch.float32] < 100 and worst[torch.float64] < 100, worst


def test_decompose_in_float16_has_finite_gradients():
    from bmclib.biomech import decompose

    for family in FAMILIES:
        x = fuzz_poses(family, 128, seed=2).half().requires_grad_(True)
        d = decompose(x)
        total = sum(getattr(d, k).float().sum() for k in ("bone_lengths", "root_angles", "root_curvatures", "angles",
                                                          "frames", "palm_normals"))
        g, = torch.autograd.grad(total, x)
        assert torch.isfinite(g).all(), family


def test_the_scale_rule_leaves_normal_hands_unchanged(hands):
    # the finger floor on the pose's size only acts on collapsed palms: real hands' size is still the
    # rms root-bone length, bit for bit
    from bmclib.biomech import PALM_FLOOR, decompose

    d = decompose(hands[0])
    rms_all = d.bone_lengths.pow(2).mean(-1).sqrt()
    assert bool((d.scale > 2.5 * PALM_FLOOR * rms_all).all())  # measured: >= 1.5 x rms_all, the floor 0.5 x
    assert bool((d.root_curvatures.abs() > 0).all())  # the curvature fade (|dr| < EPS_DEGENERATE) never acts
    roots = d.bones[..., [b - 1 for b in (1, 5, 9, 13, 17)], :]
    assert torch.allclose(d.scale, roots.pow(2).sum((-2, -1)).div(5).sqrt(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "fold_pi"])
def test_the_fused_backward_equals_autograd_on_degenerate_poses(family):
    # every floor and fade of the hand-written backward against the autograd reference (float64);
    # fold_pi is left out: an exact fold sits on atan2's branch cut at +-pi, where the two paths'
    # rounding picks different sides (measure zero)
    poses = fuzz_poses(family, 64, seed=5)
    (t_f, g_f), (t_a, g_a) = _grad(poses, torch.float64, True), _grad(poses, torch.float64, False)
    assert torch.allclose(t_f, t_a, rtol=1e-9, atol=1e-12)
    scale = g_a.abs().amax((-2, -1), keepdim=True).clamp_min(1e-12)
    assert float(((g_f - g_a).abs() / scale).max()) < 1e-6


def test_bmc_loss_names_non_tensor_input():
    from bmclib.losses import BMCLoss

    with pytest.raises(TypeError, match="torch.Tensor.*numpy.ndarray.*torch.from_numpy"):
        BMCLoss()(np.zeros((2, 21, 3)))  # was AttributeError: 'str' object has no attribute 'type'
    with pytest.raises(TypeError, match="list"):
        BMCLoss()([[0.0] * 3] * 21)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bmc_loss_of_an_empty_batch_is_zero_with_a_zero_gradient(reduction):
    from bmclib.losses import BMCLoss

    x = torch.zeros(0, 21, 3, requires_grad=True)
    out = BMCLoss(reduction=reduction)(x)  # "mean" was NaN, silently
    assert not torch.isnan(out.total).any()
    assert out.total.shape == ((0,) if reduction == "none" else ())
    if reduction != "none":
        assert float(out.total.detach()) == 0.0
    out.total.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    half = BMCLoss(reduction=reduction)(torch.zeros(0, 21, 3, dtype=torch.float16))
    assert half.total.dtype == torch.float32  # as a full half-precision batch
    with pytest.raises(ValueError, match="floating point"):
        BMCLoss(reduction=reduction)(torch.zeros(0, 21, 3, dtype=torch.int64))  # as a full integer batch
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, 3\)"):
        BMCLoss(reduction=reduction)(torch.zeros(0, 20, 3))


def test_an_interrupted_checkpoint_write_is_cleaned_on_the_next_start(train_data, tmp_path):
    from bmclib.train import preset, train

    cfg = preset("tiny", source=str(train_data / "source" / "cache" / "training"), out=str(tmp_path / "runs"),
                 name="r")
    run = train(cfg, progress=False, stop_after=3)  # killed after its first checkpoint
    stale = [run / ".checkpoint.pt.k2j4x9ab.tmp.pt", run / ".train_log.csv.a81b_0zq.tmp.csv"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")  # what a kill during atomic_path leaves (mkstemp's 8 characters)
    mine = [run / ".notes.txt.tmpl", run / ".plan.md.k2j4x9ab.tmp.txt", run / "results.tmp.pt"]
    for p in mine:  # not atomic_path's: kept
        p.write_text("mine")
    train(cfg, progress=False)  # resumes
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "mine" for p in mine)


def _bad_size_config(tmp_path: Path) -> Path:
    p = tmp_path / "size.yaml"
    p.write_text("preset: tiny\nimage_size: 32\n")
    return p


@pytest.mark.parametrize("case", ["weak cache missing", "limits file missing", "image size mismatch"])
def test_a_run_refused_for_its_inputs_leaves_no_folder(case, train_data, tmp_path, capsys):
    src = train_data / "source" / "cache" / "training"
    runs = tmp_path / "runs"
    argv = ["train", "--source", src, "--name", "r", "--out", runs]
    if case == "weak cache missing":
        argv += ["--preset", "tiny", "--weak", tmp_path / "nowhere"]
    elif case == "limits file missing":
        argv += ["--preset", "tiny", "--bmc", "--limits", tmp_path / "limits.json"]
    else:
        argv += ["--config", _bad_size_config(tmp_path)]
    rc, err = run_cli(argv, capsys)
    assert rc == 2, err
    assert not (runs / "r").exists(), f"{case}: an empty run folder was left"


def test_a_pickle_payload_checkpoint_is_refused_without_torchs_unsafe_advice(trained, tmp_path):
    from bmclib.validate import load_checkpoint

    marker = tmp_path / "PAYLOAD_RAN"
    p = tmp_path / "checkpoint.pt"
    torch.save({"model": Payload(marker), "config": {}, "step": 1}, p)
    with pytest.raises(ValueError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert "weights_only" not in msg and "will likely succeed" not in msg
    assert re.search(r"it names '(posix|nt)\.system'", msg) and "checkpoint.pt" in msg
    assert not marker.exists()
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError) as e:
        load_checkpoint(p)
    assert "weights_only" not in str(e.value) and "checkpoint" in str(e.value)


@pytest.mark.parametrize("value, says", [(None, "is None"), ("list", "got a list")])
def test_ho3d_meta_says_what_was_wrong(value, says, ho3d, tmp_path):
    from bmclib.data.ho3d import read_ho3d_meta

    src = ho3d[0] / "train" / "ABF10" / "meta" / "0001.pkl"
    with open(src, "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    p = tmp_path / "0001.pkl"
    with open(p, "wb") as f:
        pickle.dump([1, 2, 3] if value == "list" else {**meta, "camMat": None}, f, protocol=2)
    with pytest.raises(ValueError, match=says) as e:
        read_ho3d_meta(p)
    assert "missing key" not in str(e.value)


def test_pred_json_of_the_wrong_kind_says_what_it_got(tmp_path):
    from bmclib.predictions import read_pred_json

    p = tmp_path / "pred.json"
    p.write_text(json.dumps({"xyz": [], "verts": []}))
    with pytest.raises(ValueError, match=r"got a dict with keys \['verts', 'xyz'\]") as e:
        read_pred_json(p)
    assert "?" not in str(e.value)


def test_bmc_fuzz_prints_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "fuzz.md"
    rc = main(["fuzz", "--poses", "6", "--families", "scale_ref", "fold_pi", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "| scale_ref | fused | float64 | 6 | 0 |" in text and "0 of 12 rows break the bound" in text
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert len(rows) == 12 and all(r["non_finite"] == 0 for r in rows)
    assert "bmc fuzz --poses 6" in out.read_text()
