"""What practitioners have: the prediction readers take plain pose lists, any-named .npz arrays and
files with non-finite poses (counted, not refused, where the report says so); `bmc refine` checks
every option before working, counts what it leaves as given, keeps the 2D and reports what users
care about."""
import json

import numpy as np
import pytest
import torch

from bmclib import skeleton as sk
from bmclib.camera import project
from bmclib.cli import main
from bmclib.handmodel import template_pose
from bmclib.predictions import load_predictions, read_predictions


def _hands(n: int = 5) -> np.ndarray:
    """``n`` right hands 0.5 m in front of the camera, metres."""
    j = template_pose().double().numpy()
    g = np.random.default_rng(0)
    return np.stack([j + np.array([0.02 * g.normal(), 0.02 * g.normal(), 0.5]) for _ in range(n)])


def _K(n: int) -> np.ndarray:
    return np.tile(np.array([[300.0, 0, 64], [0, 300.0, 64], [0, 0, 1]]), (n, 1, 1))


def test_every_form_of_a_pose_file_reads_the_same_joints(tmp_path):
    xyz = _hands(3)
    (tmp_path / "plain.json").write_text(json.dumps(xyz.tolist()))  # a plain N x 21 x 3 list
    (tmp_path / "pair.json").write_text(json.dumps([xyz.tolist(), []]))  # FreiHAND's [xyz, verts]
    np.savez(tmp_path / "joints.npz", joints=xyz)  # one array, any name
    np.savez(tmp_path / "two.npz", pose=xyz, conf=np.ones(3))
    for f in ("plain.json", "pair.json", "joints.npz"):
        np.testing.assert_allclose(load_predictions(tmp_path / f), xyz, err_msg=f)
    np.testing.assert_allclose(load_predictions(tmp_path / "two.npz", key="pose"), xyz)
    with pytest.raises(ValueError, match=r"two.npz: no 'xyz' array \(has \['pose', 'conf'\]\); name .* --key"):
        load_predictions(tmp_path / "two.npz")
    # two poses as a plain list is not mistaken for [xyz_list, verts_list]
    (tmp_path / "two.json").write_text(json.dumps(xyz[:2].tolist()))
    assert load_predictions(tmp_path / "two.json").shape == (2, 21, 3)


def test_empty_broken_and_non_finite_files_are_named(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 21, 3)))
    with pytest.raises(ValueError, match=r"empty.npy: field 'xyz': no poses"):
        load_predictions(tmp_path / "empty.npy")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"cut.npz: not a readable .npz"):
        load_predictions(tmp_path / "cut.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj.npy: not a plain numeric .npy"):
        load_predictions(tmp_path / "obj.npy")
    xyz = _hands(4)
    xyz[1, 3, 2] = np.nan
    np.save(tmp_path / "nan.npy", xyz)
    with pytest.raises(ValueError, match=r"nan.npy: field 'xyz': sample 1: NaN"):
        load_predictions(tmp_path / "nan.npy")
    kept = load_predictions(tmp_path / "nan.npy", non_finite="keep")
    assert np.isnan(kept[1]).any() and np.isfinite(kept[[0, 2, 3]]).all()


def test_audit_counts_non_finite_poses_and_rates_the_rest(tmp_path, capsys):
    xyz = _hands(4)
    xyz[2, 7, 1] = np.nan
    (tmp_path / "pred.json").write_text(json.dumps([xyz.tolist(), []]))
    assert main(["audit", str(tmp_path / "pred.json"), "--out", str(tmp_path / "a")]) == 0
    assert "1 poses not finite, left out of every rate" in capsys.readouterr().out
    md = (tmp_path / "a" / "audit.md").read_text()
    assert "non-finite poses (left out of every rate): 1" in md
    worst = [line.split("|")[1].strip() for line in md.split("Worst")[1].splitlines() if line.startswith("| ")
             and line.split("|")[1].strip().isdigit()]
    assert "2" not in worst and len(worst) == 3  # the NaN pose is never ranked
    assert main(["audit", str(tmp_path / "pred.json"), "--worst", "-3", "--out", str(tmp_path / "b")]) == 2
    assert "--worst: expected an integer >= 0, got -3" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--steps", "-5"], "--steps: expected an integer >= 0, got -5"),
    (["--prior", "nan"], "--prior: expected a finite number >= 0, got nan"),
    (["--prior", "-1"], "--prior: expected a finite number >= 0, got -1.0"),
])
def test_refine_checks_its_options_before_any_work(tmp_path, capsys, argv, message):
    np.save(tmp_path / "p.npy", _hands(2))
    np.save(tmp_path / "K.npy", _K(2))
    assert main(["refine", str(tmp_path / "p.npy"), "--K", str(tmp_path / "K.npy"), "--out",
                 str(tmp_path / "r.npz"), *argv]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "r.npz").exists()


def test_refine_out_suffix_is_checked_first(tmp_path, capsys):
    assert main(["refine", str(tmp_path / "missing.npy"), "--K", str(tmp_path / "K.npy"), "--out",
                 str(tmp_path / "r.txt")]) == 2
    assert "--out" in capsys.readouterr().err  # named before the missing input is even read


def test_refine_keeps_the_2d_counts_what_it_leaves_and_reports_plausibility(tmp_path, capsys):
    xyz = _hands(5)
    xyz[0, 8, 2] += 0.03  # a bent tip: implausible
    xyz[1, 2, 0] = np.nan  # not finite
    xyz[2, 4, 2] = -0.1  # a joint behind the camera
    xyz[3, 10] = xyz[3, 9]  # a collapsed reference bone
    np.save(tmp_path / "p.npy", xyz)
    np.save(tmp_path / "K.npy", _K(5))
    out = tmp_path / "r.npz"
    assert main(["refine", str(tmp_path / "p.npy"), "--K", str(tmp_path / "K.npy"), "--out", str(out),
                 "--steps", "20", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "5 poses, 2 refined" in said and "plausible (every BMC term inside the limits)" in said
    assert "3 left as given (1 not finite, 1 with a joint behind the camera, 1 with a collapsed reference bone" in said
    got = np.load(out)
    assert set(got.files) == {"xyz"}  # a non-finite pose has no 2D: uv only when every pose has one
    r = got["xyz"].astype(np.float64)
    np.testing.assert_array_equal(r[[1, 2, 3]], xyz[[1, 2, 3]].astype(np.float32).astype(np.float64))
    ok = [0, 4]
    uv0 = project(torch.as_tensor(xyz[ok]), torch.as_tensor(_K(2))).numpy()
    uv1 = project(torch.as_tensor(r[ok]), torch.as_tensor(_K(2))).numpy()
    np.testing.assert_allclose(uv1, uv0, atol=1e-3)  # the rays kept (float32 file)

    clean = _hands(3)
    np.save(tmp_path / "c.npy", clean)
    np.save(tmp_path / "K3.npy", _K(3))
    assert main(["refine", str(tmp_path / "c.npy"), "--K", str(tmp_path / "K3.npy"), "--out", str(tmp_path / "c.npz"),
                 "--steps", "5", "--quiet"]) == 0
    saved = read_predictions(tmp_path / "c.npz")
    np.testing.assert_allclose(saved["uv"], project(torch.as_tensor(saved["xyz"]), torch.as_tensor(_K(3))).numpy(),
                               atol=1e-3)


def test_refine_in_mano_order_returns_mano_order(tmp_path, capsys):
    xyz = _hands(2)
    np.save(tmp_path / "m.npy", sk.to_mano(xyz))
    np.save(tmp_path / "K.npy", _K(2))
    assert main(["refine", str(tmp_path / "m.npy"), "--K", str(tmp_path / "K.npy"), "--out", str(tmp_path / "r.npy"),
                 "--order", "mano", "--steps", "0", "--quiet"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), sk.to_mano(xyz), atol=1e-12)  # 0 steps: unchanged
    np.testing.assert_array_equal(sk.from_mano(sk.to_mano(xyz)), xyz)


def test_audit_warns_when_the_joints_look_mirrored_or_in_the_other_order(tmp_path, capsys):
    from conftest import anatomical_hands

    xyz = anatomical_hands(64, seed=4)[0].numpy()
    np.save(tmp_path / "right.npy", xyz)
    np.save(tmp_path / "left.npy", sk.mirror_joints(xyz))
    np.save(tmp_path / "mano.npy", sk.to_mano(xyz))
    assert main(["audit", str(tmp_path / "right.npy"), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "are they left hands" not in err and "order" not in err  # the right input: no warning
    assert main(["audit", str(tmp_path / "left.npy"), "--out", str(tmp_path / "b")]) == 0
    assert "are they left hands? (bmc audit --side left)" in capsys.readouterr().err
    assert main(["audit", str(tmp_path / "mano.npy"), "--out", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "are the joints in mano order? (bmc audit --order mano)" in err
    assert "--order mano" in (tmp_path / "c" / "audit.md").read_text()
    assert main(["audit", str(tmp_path / "mano.npy"), "--order", "mano", "--out", str(tmp_path / "d")]) == 0
    assert "order" not in capsys.readouterr().err


def test_bmc_synth_renders_the_benchmarks_appearances(tmp_path, capsys):
    from bmclib.bench.cli import main as bench_main

    out = tmp_path / "glove"
    assert bench_main(["synth", "--domain", "source", "--num", "2", "--num-eval", "1", "--size", "32", "--appearance",
                       "glove", "--n-hands", "2", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "provenance.json").read_text())["config"]["appearance"] == "glove"
    with pytest.raises(SystemExit):  # argparse names the choices
        bench_main(["synth", "--domain", "source", "--num", "2", "--size", "32", "--appearance", "paint",
                    "--out", str(tmp_path / "x")])
    assert "invalid choice: 'paint'" in capsys.readouterr().err
