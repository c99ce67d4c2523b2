"""Prediction and camera file formats (bmclib.predictions): each reader validates and names the field."""
import json

import numpy as np
import pytest

from bmclib.predictions import load_intrinsics, load_predictions, read_pred_json, write_pred_json

K1 = [[500.0, 0.0, 112.0], [0.0, 500.0, 112.0], [0.0, 0.0, 1.0]]


def test_the_three_prediction_formats_read_the_same_joints(tmp_path):
    xyz = np.random.default_rng(0).normal(0, 0.05, (3, 21, 3)) + [0, 0, 0.6]
    write_pred_json(tmp_path / "pred.json", xyz)
    np.savez(tmp_path / "p.npz", xyz=xyz)
    np.save(tmp_path / "p.npy", xyz)
    for name in ("pred.json", "p.npz", "p.npy"):
        assert np.allclose(load_predictions(tmp_path / name), xyz), name
    got, verts = read_pred_json(tmp_path / "pred.json")
    assert verts.shape == (3, 778, 3) and not verts.any()  # joints only: zero vertices
    with pytest.raises(ValueError, match=r"verts: expected \(3, 778, 3\)"):
        write_pred_json(tmp_path / "bad.json", xyz, np.zeros((3, 10, 3)))
    assert not (tmp_path / "bad.json").exists()
    np.savez(tmp_path / "noxyz.npz", uv=xyz[..., :2])
    with pytest.raises(ValueError, match=r"no 'xyz' array"):
        load_predictions(tmp_path / "noxyz.npz")
    (tmp_path / "p.txt").write_text("0 0 0")
    with pytest.raises(ValueError, match=r"expected \.json"):
        load_predictions(tmp_path / "p.txt")


def test_intrinsics_from_json_npy_and_a_cache_folder_name_the_bad_field(tmp_path):
    (tmp_path / "K.json").write_text(json.dumps([K1, K1]))
    np.save(tmp_path / "K.npy", np.array([K1] * 3))
    assert load_intrinsics(tmp_path / "K.json").shape == (2, 3, 3)
    assert load_intrinsics(tmp_path / "K.npy").shape == (3, 3, 3)
    bad = [K1, [[0.0, 0, 112], [0, 500, 112], [0, 0, 1]]]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"bad.json: field 'K': sample 1: focal lengths must be > 0"):
        load_intrinsics(tmp_path / "bad.json")
    (tmp_path / "shape.json").write_text(json.dumps([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"shape.json.*K"):
        load_intrinsics(tmp_path / "shape.json")
    with pytest.raises(FileNotFoundError, match="intrinsics not found"):
        load_intrinsics(tmp_path / "missing.npy")


def test_the_projects_predictions_file_round_trips_and_is_validated(tmp_path):
    from bmclib.predictions import read_predictions, write_predictions

    xyz = np.random.default_rng(1).normal(0, 0.05, (4, 21, 3))
    uv = np.random.default_rng(2).uniform(0, 96, (4, 21, 2))
    write_predictions(tmp_path / "predictions.npz", xyz, uv)
    got = read_predictions(tmp_path / "predictions.npz")
    assert np.allclose(got["xyz"], xyz, atol=1e-6) and np.allclose(got["uv"], uv, atol=1e-4)
    write_predictions(tmp_path / "joints.npy", xyz)
    assert np.allclose(load_predictions(tmp_path / "joints.npy"), xyz)
    with pytest.raises(ValueError, match=r"uv: expected \(4, 21, 2\)"):
        write_predictions(tmp_path / "bad.npz", xyz, uv[:2])
    xyz[1, 3, 0] = np.nan
    np.savez(tmp_path / "nan.npz", xyz=xyz)
    with pytest.raises(ValueError, match=r"nan.npz: field 'xyz'"):
        read_predictions(tmp_path / "nan.npz")
