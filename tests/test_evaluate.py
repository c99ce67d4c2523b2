"""Metrics (bmclib.evaluate): Procrustes alignment, PCK / AUC and the per-image metrics of the benchmark."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from bmclib.evaluate import pck_auc, per_image_metrics, procrustes_align

from conftest import anatomical_hands


@pytest.fixture(scope="module")
def hands():
    return anatomical_hands(12, seed=2)[0].numpy()


def test_procrustes_undoes_a_similarity_transform_and_nothing_more(hands):
    R = Rotation.from_euler("xyz", [30, -20, 50], degrees=True).as_matrix()
    moved = 1.7 * hands @ R.T + np.array([0.1, -0.2, 0.3])
    assert np.abs(procrustes_align(moved, hands) - hands).max() < 1e-7  # metres
    bent = hands.copy()
    bent[:, 8] += 0.01  # a 1 cm change of one tip cannot be aligned away
    assert np.abs(procrustes_align(bent, hands) - hands).max() > 1e-3


def test_pck_and_its_auc():
    errors = np.array([[0.0, 1.0], [2.0, 3.0]])  # two samples, two keypoints
    th, pck, auc = pck_auc(errors, max_err=4.0, n=5)  # thresholds 0, 1, 2, 3, 4
    assert np.allclose(th, [0, 1, 2, 3, 4])
    assert np.allclose(pck, [0.25, 0.5, 0.75, 1.0, 1.0])  # share of errors <= t, per keypoint then averaged
    assert auc == pytest.approx(np.trapezoid(pck, th) / 4.0)


def test_per_image_metrics_on_the_truth_a_scaled_pose_and_a_moved_hand(hands):
    m = per_image_metrics(hands, hands, np.zeros((12, 21, 2)), np.zeros((12, 21, 2)))
    for name in ("depth_mm", "depth_norm_mm", "root_depth_mm", "pa_mpjpe_mm", "epe_3d_mm", "abs_3d_depth_part_mm",
                 "epe_2d_px"):
        assert m[name].shape == (12,) and np.allclose(m[name], 0.0, atol=1e-5), name  # mm, px
    # the same pose at 1.2x its size about the root: only the normalised depth forgives the size
    root = hands[:, :1]
    big = root + 1.2 * (hands - root)
    s = per_image_metrics(big, hands)
    assert np.allclose(s["depth_norm_mm"], 0.0, atol=1e-9) and (s["depth_mm"] > 1).all()
    assert np.allclose(s["root_depth_mm"], 0.0) and np.allclose(s["pa_mpjpe_mm"], 0.0, atol=1e-5)
    # the whole hand 5 cm further away: the distance error is 50 mm, the root-relative errors 0
    far = hands + np.array([0.0, 0.0, 0.05])
    f = per_image_metrics(far, hands)
    assert np.allclose(f["root_depth_mm"], 50.0) and np.allclose(f["depth_mm"], 0.0, atol=1e-9)
    assert np.allclose(f["epe_3d_mm"], 0.0, atol=1e-9)
