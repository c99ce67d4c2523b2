"""Shared test helpers: seeded anatomical hands, rotations, hypothesis profiles, and the
format-exact FreiHAND / RHD / HO-3D fixtures (small folders in each data set's on-disk layout)."""
from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from hypothesis import HealthCheck, settings

from bmclib import anatomy
from bmclib import skeleton as sk
from bmclib.biomech import compose_parts
from bmclib.camera import project
from bmclib.data.ho3d import OPENGL_TO_CAMERA
from bmclib.data.synth import generate_batch
from bmclib.handmodel import sample_hand_shapes

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def rom_angles(n: int, generator: torch.Generator, shrink: float = 0.9, dtype=torch.float64) -> torch.Tensor:
    """``(n, 5, 3, 2)`` angles uniform inside each joint's range of motion, shrunk about its centre."""
    lo = torch.tensor([[[r.flexion[0], r.abduction[0]] for r in anatomy.RANGE_OF_MOTION[f]] for f in sk.FINGER_NAMES],
                      dtype=dtype) * math.pi / 180
    hi = torch.tensor([[[r.flexion[1], r.abduction[1]] for r in anatomy.RANGE_OF_MOTION[f]] for f in sk.FINGER_NAMES],
                      dtype=dtype) * math.pi / 180
    mid, half = (lo + hi) / 2, (hi - lo) / 2 * shrink
    u = torch.rand(n, 5, 3, 2, generator=generator, dtype=dtype) * 2 - 1
    return mid + half * u


def random_rotation(n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """``(n, 3, 3)`` uniformly random proper rotations."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    det = torch.linalg.det(q)
    return q * torch.where(det < 0, -1.0, 1.0).to(dtype)[:, None, None]


def anatomical_hands(n: int, seed: int = 0, dtype=torch.float64, rotate: bool = True):
    """``(joints (n, 21, 3) metres, angles (n, 5, 3, 2))``: hands posed inside the ranges of motion,
    randomly rotated and placed 0.5-0.8 m in front of a camera."""
    g = torch.Generator().manual_seed(seed)
    shapes = sample_hand_shapes(n, g, dtype=torch.float64)
    angles = rom_angles(n, g)
    joints = compose_parts(shapes.root_bones, shapes.finger_lengths, angles)
    if rotate:
        joints = joints @ random_rotation(n, g).transpose(-1, -2)
        joints = joints + torch.tensor([0.0, 0.0, 0.65]) + 0.1 * torch.randn(n, 1, 3, generator=g, dtype=torch.float64)
    return joints.to(dtype), angles.to(dtype)


@pytest.fixture(scope="session")
def hands():
    return anatomical_hands(256, seed=1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (DDP rendezvous, JupyterLab)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_np(xyz, K):
    return project(torch.from_numpy(np.asarray(xyz, dtype=np.float64)), torch.from_numpy(np.asarray(K, np.float64))).numpy()


# ---------------------------------------------------------------- format-exact real-data fixtures
@pytest.fixture(scope="session")
def freihand(tmp_path_factory):
    """FreiHAND v2 as shipped: 3 annotations x 4 image versions, masks for the first 3 only,
    mano / verts files, an evaluation split with K and scale only."""
    root = tmp_path_factory.mktemp("FreiHAND_pub_v2")
    b = generate_batch("target", 5, 224, torch.Generator().manual_seed(0))
    n = 3
    (root / "training" / "rgb").mkdir(parents=True)
    (root / "training" / "mask").mkdir(parents=True)
    (root / "evaluation" / "rgb").mkdir(parents=True)
    for v in range(4):
        for i in range(n):
            img = np.clip(b.images[i].numpy().astype(int) + 20 * v, 0, 255).astype(np.uint8)  # 4 "versions"
            Image.fromarray(img).save(root / "training" / "rgb" / f"{i + n * v:08d}.jpg", quality=95)
    for i in range(n):
        Image.fromarray(b.masks[i].numpy()).save(root / "training" / "mask" / f"{i:08d}.jpg")
    dump = lambda name, x: (root / name).write_text(json.dumps(np.asarray(x).tolist()))  # noqa: E731
    dump("training_xyz.json", b.xyz[:n].numpy())
    dump("training_K.json", b.K[:n].numpy())
    dump("training_scale.json", b.scale[:n].numpy())
    dump("training_mano.json", np.zeros((n, 1, 61)))
    dump("training_verts.json", np.zeros((n, 778, 3)))
    dump("evaluation_K.json", b.K[n:].numpy())
    dump("evaluation_scale.json", b.scale[n:].numpy())
    for i in range(2):
        Image.fromarray(b.images[n + i].numpy()).save(root / "evaluation" / "rgb" / f"{i:08d}.jpg")
    return root, b


@pytest.fixture(scope="session")
def rhd(tmp_path_factory):
    """RHD layout: sample 0 a right hand, sample 1 a left hand (a mirrored right hand),
    sample 2 both hands with the left one larger in the mask."""
    root = tmp_path_factory.mktemp("RHD_published_v2")
    b = generate_batch("source", 3, 320, torch.Generator().manual_seed(4))
    split = root / "training"
    for sub in ("color", "mask", "depth"):
        (split / sub).mkdir(parents=True)
    anno = {}
    W = 320
    for i in range(3):
        xyz, uv, K = b.xyz[i].numpy(), b.uv[i].numpy(), b.K[i].numpy()
        vis = b.visible[i].numpy().astype(float)
        img, msk = b.images[i].numpy(), b.masks[i].numpy() > 0
        left = i >= 1
        if left:  # make it a left hand: mirror everything
            xyz, uv = sk.mirror_joints(xyz), sk.mirror_uv(uv, W)
            K = K.copy()
            K[0, 2] = W - 1 - K[0, 2]
            img, msk = img[:, ::-1].copy(), msk[:, ::-1].copy()
        hand = np.concatenate([sk.to_rhd(xyz), ], 0)
        uv_vis = np.concatenate([sk.to_rhd(uv), sk.to_rhd(vis[:, None])], 1)
        other_xyz = np.zeros((21, 3))
        other_uv = np.concatenate([np.full((21, 2), 10.0), np.zeros((21, 1))], 1)
        mask = np.where(msk, 5 if left else 20, 0).astype(np.uint8)  # 2-17 left, 18-33 right
        if i == 2:
            mask[:4, :4] = 25  # a few pixels of a right hand too
            other_uv[:, 2] = 1
        xyz42 = np.concatenate([hand, other_xyz] if left else [other_xyz, hand])
        uv42 = np.concatenate([uv_vis, other_uv] if left else [other_uv, uv_vis])
        anno[i] = {"xyz": xyz42.astype(np.float32), "uv_vis": uv42.astype(np.float32), "K": K.astype(np.float32)}
        Image.fromarray(img).save(split / "color" / f"{i:05d}.png")
        Image.fromarray(mask).save(split / "mask" / f"{i:05d}.png")
        Image.fromarray(np.zeros((W, W, 3), np.uint8)).save(split / "depth" / f"{i:05d}.png")
    with open(split / "anno_training.pickle", "wb") as f:
        pickle.dump(anno, f)
    return root, b


@pytest.fixture(scope="session")
def ho3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("HO3D_v3")
    b = generate_batch("target", 3, 64, torch.Generator().manual_seed(9))
    K = np.array([[614.0, 0, 320.0], [0, 614.0, 240.0], [0, 0, 1]])
    xyz = b.xyz.numpy() * [1, 1, 1] + [0.0, 0.0, 0.1]
    frames = {"train": ["ABF10/0000", "ABF10/0001"], "evaluation": ["SM1/0000"]}
    for split, names in frames.items():
        (root / f"{split}.txt").write_text("\n".join(names) + "\n")
        for k, name in enumerate(names):
            seq, fid = name.split("/")
            for sub in ("rgb", "meta", "depth"):
                (root / split / seq / sub).mkdir(parents=True, exist_ok=True)
            noise = np.random.default_rng(k).integers(0, 255, (480, 640, 3), dtype=np.uint8)
            Image.fromarray(noise).save(root / split / seq / "rgb" / f"{fid}.jpg")
            i = k if split == "train" else 2
            opengl = sk.to_ho3d(xyz[i]) @ OPENGL_TO_CAMERA  # MANO order, OpenGL axes
            meta = {"camMat": K, "handPose": np.zeros(48), "handBeta": np.zeros(10), "handTrans": np.zeros(3),
                    "handJoints3D": opengl}
            if split == "evaluation":
                uv = project_np(xyz[i], K)
                meta["handJoints3D"] = opengl[0]  # root only
                meta["handBoundingBox"] = [*uv.min(0), *uv.max(0)]
            with open(root / split / seq / "meta" / f"{fid}.pkl", "wb") as f:
                pickle.dump(meta, f, protocol=2)
    return root, xyz, K


#: the devices the core tests run on: the CPU, and CUDA where this machine has it
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each core test that takes ``device`` runs once per device of :data:`DEVICES`."""
    return torch.device(request.param)


def hands_on(n: int, device: torch.device, seed: int = 0, dtype=torch.float64):
    """:func:`anatomical_hands` and FreiHAND-like intrinsics ``(n, 3, 3)`` on ``device``."""
    joints, _ = anatomical_hands(n, seed=seed, dtype=dtype)
    K = torch.tensor([[480.0, 0.0, 112.0], [0.0, 480.0, 112.0], [0.0, 0.0, 1.0]], dtype=dtype).expand(n, 3, 3)
    return joints.to(device), K.to(device)


@pytest.fixture(scope="session")
def v9_world(tmp_path_factory):
    """A folder with a mini benchmark file (``v9.yaml``: tests/test_v3.py's ``V3_MINI``) and a
    source domain whose 64 evaluation images are the labels fake runs are scored against
    (tests/test_verdict.py's ``_fake_runs``)."""
    from bmclib.data.synth import generate_dataset
    from test_v3 import V3_MINI

    root = tmp_path_factory.mktemp("verdict")
    generate_dataset(str(root / "data"), "source", 16, 64, seed=0, size=64, progress=False)
    (root / "v9.yaml").write_text(V3_MINI)
    return root
