"""The BMC loss on CPU tensors with a hand-written backward (the eager fast path).

:class:`~bmclib.losses.BMCLoss` runs here for CPU input with the half-plane angle distance:
one :class:`torch.autograd.Function` whose forward computes the decomposition and the loss in
numpy (no autograd graph is recorded) and whose backward is the derivative written out below,
step by step in reverse. Eager PyTorch spends ~3 µs per small op and records ~730 of them
for a forward and backward; a small numpy call costs ~1 µs and this file makes roughly 400
(counted from the code), so the loss is several times faster at small batches (``bmc bench``).

The arithmetic is that of :func:`bmclib.biomech.decompose_cm` and ``BMCLoss._terms_eager``
(the autograd reference, kept for CUDA, ``torch.compile``, double backward and
``torch.func``); ``tests/test_fused.py`` checks values and gradients against it, including
collapsed bones and the degenerate floors. Where the function has no derivative (a value
exactly on a clamp's floor; exactly collinear root bones, where ``|r_f+1 x r_f|`` has none),
each implementation returns the one-sided value its own rounding picks; such points have
measure zero.

Layout as in :mod:`bmclib.biomech`: component-major, batch last. ``F`` is a finger frame
``(3 rows x/y/z, 3 components, 5 fingers, N)``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .biomech import EPS_DEGENERATE as _E, PALM_FLOOR, EPS_ANGLE, EPS_NORMAL, EPS_TURN, EDGE_ROWS, PALM_ROWS, \
    scale_floor

__all__ = ["bmc_terms", "loss_weights"]

_E2INV = _E ** -2
_ROLL1, _ROLL2 = np.array([1, 2, 0]), np.array([2, 0, 1])
_EDGE, _PALM = np.array(EDGE_ROWS), np.array(PALM_ROWS)
_add = np.add.reduce


# Arrays of at least this many elements go through torch's kernels (on the same memory): numpy
# costs less per call, but its float32 arctan2 and its maximum / minimum against a scalar are
# not vectorised (15x and 4x slower than torch's on 60k elements), nor are its small batched
# matrix products.
_BIG = 4096
_t = torch.from_numpy


def _atan2(y: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    if y.size < _BIG:
        np.arctan2(y, x, out=out)
    else:
        torch.atan2(_t(y), _t(x), out=_t(out))


def _max(x: np.ndarray, v: float) -> np.ndarray:
    """max(x, v) elementwise (a new array)."""
    if x.size < _BIG:
        return np.maximum(x, v)
    out = np.empty_like(x)
    torch.clamp_min(_t(x), v, out=_t(out))
    return out


def _min(x: np.ndarray, v: float) -> np.ndarray:
    """min(x, v) elementwise (a new array)."""
    if x.size < _BIG:
        return np.minimum(x, v)
    out = np.empty_like(x)
    torch.clamp_max(_t(x), v, out=_t(out))
    return out


def _bmm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched matrix product of contiguous 3-D arrays."""
    if b.size < _BIG:
        return a @ b
    return torch.bmm(_t(a), _t(b)).numpy()


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _add(a * b, 0)


def _normalize_backward(g: np.ndarray, out: np.ndarray, norm: np.ndarray, denom: np.ndarray) -> np.ndarray:
    """Gradient of ``v / max(|v|, eps)`` given ``out``, ``|v|`` and ``denom = max(|v|, eps)``."""
    return (g - (_dot(g, out) * (norm >= _E)) * out) / denom


class _State:
    """What the backward needs from the forward (numpy arrays)."""
    __slots__ = ("fb", "L", "scale", "scale_raw", "scale_all", "fbn", "r", "r1", "r2", "rn", "rd", "z", "z1", "z2", "w", "wn",
                 "wd", "n", "mn", "md", "mid", "palm", "p1", "p2", "edge", "dots", "xr", "ar", "fr", "qr", "dr", "de",
                 "dd", "curv", "curv_raw", "q", "fc", "frames", "steps", "locs", "sq", "sqc", "nr", "a", "fade", "ref", "ref_free", "vb",
                 "values", "low", "high", "signed", "smax")


def _forward(j: np.ndarray, low: np.ndarray, high: np.ndarray, normals: np.ndarray, offsets: np.ndarray,
             ref_fk: tuple[int, int]) -> tuple[_State, np.ndarray]:
    """Joints ``(3, 21, N)`` -> state, the 43 terms ``(43, N)``: 28 interval terms, 15 angle terms."""
    s = _State()
    n_pose = j.shape[-1]
    dtype = j.dtype
    tiny = np.finfo(dtype).tiny
    fj = j[:, 1:].reshape(3, 5, 4, n_pose)
    s.fb = fb = np.empty_like(fj)  # bones, root bone first
    np.subtract(fj[:, :, 0], j[:, 0, None], out=fb[:, :, 0])
    np.subtract(fj[:, :, 1:], fj[:, :, :-1], out=fb[:, :, 1:])
    lsq = _dot(fb, fb)  # (5, 4, N)
    s.L = L = np.sqrt(_max(lsq, tiny))
    s.scale_raw = np.sqrt(_max(_add(lsq[:, 0], 0), tiny)) * 5 ** -0.5  # rms root-bone length
    s.scale_all = np.sqrt(_max(_add(lsq.reshape(20, n_pose), 0), tiny)) * (PALM_FLOOR * 20 ** -0.5)  # of all bones
    # biomech.pose_scale: the rms root-bone length, floored by the fingers, then by the dtype's floor
    s.scale = scale = _max(np.maximum(s.scale_raw, s.scale_all),
                           scale_floor(torch.float32 if dtype == np.float32 else torch.float64))
    s.fbn = fbn = fb / scale  # unitless
    s.r = r = fbn[:, :, 0]  # (3, 5, N) root bones
    # palm normals n_f = r_{f+1} x r_f, their bisectors, the first frames
    s.r1, s.r2 = r1, r2 = r.take(_ROLL1, 0), r.take(_ROLL2, 0)  # components rolled: a x b = a1 b2 - a2 b1
    s.w = w = r1[:, 1:] * r2[:, :-1] - r2[:, 1:] * r1[:, :-1]  # (3, 4, N)
    s.wn = wn = np.sqrt(_max(_dot(w, w), tiny))
    s.wd = _max(wn, _E)
    nm = np.empty((3, 7, n_pose), dtype)  # n_0..n_3, then their bisectors m_01, m_12, m_23
    s.n = n = np.divide(w, s.wd, out=nm[:, :4])
    m = np.add(n[:, 1:], n[:, :-1], out=nm[:, 4:])
    s.mn = np.sqrt(_max(_dot(m, m), tiny))
    s.md = _max(s.mn, _E)
    s.mid = np.divide(m, s.md, out=m)
    s.edge, s.palm = nm.take(_EDGE, 1), nm.take(_PALM, 1)
    s.rn = L[:, 0] / scale  # |r|
    s.rd = _max(s.rn, _E)
    frame = np.empty((3, 3, 5, n_pose), dtype)  # rows x, y, z
    s.z = z = np.divide(r, s.rd, out=frame[2])
    np.negative(s.palm, out=frame[0])
    s.p1, s.p2, s.z1, s.z2 = s.palm.take(_ROLL1, 0), s.palm.take(_ROLL2, 0), z.take(_ROLL1, 0), z.take(_ROLL2, 0)
    np.subtract(s.p1 * s.z2, s.p2 * s.z1, out=frame[1])  # palm x z
    # root angular distances and curvatures
    s.dots = dots = _dot(r[:, :-1], r[:, 1:])  # (4, N)
    s.xr = dots + EPS_ANGLE
    s.ar = np.empty_like(dots)
    _atan2(wn, s.xr, s.ar)
    s.qr = (wn * wn + dots * dots) * _E2INV
    s.fr = _min(s.qr, 1.0)
    s.dr = dr = r[:, 1:] - r[:, :-1]
    s.de = s.edge[:, 1:] - s.edge[:, :-1]
    s.q = _dot(dr, dr)
    s.dd = (s.q + EPS_NORMAL ** 2) * scale
    s.curv_raw = _dot(s.de, dr) / s.dd
    s.fc = _min(s.q * _E2INV, 1.0)  # neighbouring root bones closer than E fade to curvature 0
    s.curv = s.curv_raw * s.fc
    # the finger chain: each bone in its frame, then the frame turned onto it
    s.locs = locs = np.empty((3, 3, 5, n_pose), dtype)  # bone, row, finger, pose
    s.sq = sq = np.empty((3, 2, 5, n_pose), dtype)  # |(l_x, l_z)|^2, |l|^2 per bone
    s.frames, s.steps = [frame], []
    for k in range(3):
        loc = np.einsum("rcfn,cfn->rfn", frame, fbn[:, :, k + 1], out=locs[k])
        loc[2] += EPS_ANGLE
        ll = loc * loc
        np.add(ll[0], ll[2], out=sq[k, 0])
        np.add(sq[k, 0], ll[1], out=sq[k, 1])
        if k == 2:
            break
        # the next frame: Rodrigues' minimal rotation taking z onto d (frame coordinates)
        n1 = np.sqrt(_max(sq[k, 1], tiny))
        fl = _max(n1, _E)
        d = loc / fl
        d[2] += (fl - n1) / fl  # below the floor the direction turns towards e_z
        new = np.empty_like(frame)
        zn = np.einsum("rcfn,rfn->cfn", frame, d, out=new[2])  # (3, 5, N) world: the new z
        den = _max(d[2] + 1.0, EPS_TURN)
        kk = d[:2] / den
        sz = frame[2] + zn
        np.subtract(frame[:2], kk[:, None] * sz, out=new[:2])
        s.steps.append((n1, fl, d, den, kk, sz))
        s.frames.append(frame := new)
    s.sqc = _max(sq, tiny)
    s.nr = nr = np.sqrt(s.sqc)
    s.a = a = np.empty_like(sq)
    _atan2(locs[:, 0], locs[:, 2], a[:, 0])  # flexion = atan2(l_x, l_z)
    _atan2(locs[:, 1], nr[:, 0], a[:, 1])  # abduction = atan2(l_y, |(l_x, l_z)|)
    s.fade = _min(s.sqc * _E2INV, 1.0)
    angles = np.empty((5, 3, 2, n_pose), dtype)  # finger-major, as the polygons
    np.multiply(a, s.fade, out=angles.transpose(1, 2, 0, 3))
    # the loss terms
    lref = L[ref_fk]
    floor = _E * scale
    s.ref_free = lref >= floor
    s.ref = ref = np.where(s.ref_free, lref, floor)
    s.values, s.low, s.high = values, _, _ = np.empty((28, n_pose), dtype), low, high
    s.vb = np.divide(L.reshape(20, n_pose), ref, out=values[:20])
    np.multiply(s.curv, ref, out=values[20:24])
    np.multiply(s.ar, s.fr, out=values[24:])  # root angles
    per = np.empty((43, n_pose), dtype)  # 28 interval terms, then 15 angle terms
    per[:28] = _max(low - values, 0.0)
    per[:28] += _max(values - high, 0.0)
    s.signed = _bmm(normals, angles.reshape(15, 2, n_pose))
    s.signed -= offsets  # (15, M, N)
    s.smax = np.maximum.reduce(s.signed, 1) if s.signed.size < _BIG else _t(s.signed).amax(1).numpy()
    per[28:] = _max(s.smax, 0.0)
    return s, per


def _backward(s: _State, g_interval: np.ndarray, g_angle: np.ndarray, normals_t: np.ndarray,
              ref_fk: tuple[int, int]) -> np.ndarray:
    """Gradients of the per-interval ``(28, N)`` and per-angle ``(15, N)`` terms -> joints ``(3, 21, N)``.
    ``normals_t`` are the polygons' edge normals ``(15, 3, M)``, transposed, with a row of ones."""
    fb, scale, r = s.fb, s.scale, s.r
    n_pose = fb.shape[-1]
    dtype = fb.dtype
    # interval hinges and the reference bone
    gv = g_interval * np.subtract(s.values > s.high, s.values < s.low, dtype=dtype)
    gvb, gvc, g_ra = gv[:20], gv[20:24], gv[24:]
    g_l = (gvb / s.ref).reshape(5, 4, n_pose)
    g_ref = _dot(gvc, s.curv) - _dot(gvb, s.vb) / s.ref
    g_l[ref_fk] += g_ref * s.ref_free
    g_scale = g_ref * ~s.ref_free * _E
    g_curv = gvc * s.ref
    # polygons: the gradient of the active edge's signed distance is its normal (ties share it, as amax)
    top = _bmm(normals_t, (s.signed == s.smax[:, None]).astype(dtype))  # (15, 3, N): sums of normals, count
    top[:, :2] *= (g_angle * (s.smax > 0) / top[:, 2])[:, None]
    g_ang = top[:, :2].reshape(5, 3, 2, n_pose).transpose(1, 2, 0, 3)  # (3 bones, 2, 5, N)
    # curvature = (de . dr) / ((dr . dr + eps^2) scale) x min(1, dr . dr / E^2)
    g_q = g_curv * s.curv_raw * (s.q < _E * _E) * _E2INV
    g_curv = g_curv * s.fc
    g_p = g_curv / s.dd
    cc = g_curv * s.curv_raw
    g_scale -= _add(cc, 0) / scale
    g_de = g_p * s.dr
    g_dr = g_p * s.de + (2.0 * g_q - 2.0 * cc * scale / s.dd) * s.dr
    g_edge = np.zeros_like(s.edge)
    np.negative(g_de, out=g_edge[:, :4])
    g_edge[:, 1:] += g_de
    g_r = np.zeros_like(r)
    np.negative(g_dr, out=g_r[:, :4])
    g_r[:, 1:] += g_dr
    # angles = atan2(...) * fade(sq), all bones at once; then the chain, last bone first
    locs, sqc, nr = s.locs, s.sqc, s.nr
    g_a = g_ang * s.fade
    g_sq = g_ang * s.a
    g_sq *= (s.fade < 1.0) * _E2INV
    den_a = locs[:, 1] * locs[:, 1] + sqc[:, 0]
    g_loc = np.empty_like(locs)
    g_af = g_a[:, 0] / sqc[:, 0]  # (l_x, l_z) can be exactly (0, 0): the faded angle's gradient is 0 there
    np.multiply(g_af, locs[:, 2], out=g_loc[:, 0])
    np.multiply(g_af, -locs[:, 0], out=g_loc[:, 2])
    g_aa = g_a[:, 1] / den_a
    np.multiply(g_aa, nr[:, 0], out=g_loc[:, 1])
    g_sq[:, 0] -= g_aa * locs[:, 1] / (2.0 * nr[:, 0])
    g_sq *= 2.0
    g_sq[:, 0] += g_sq[:, 1]
    g_loc[:, ::2] += locs[:, ::2] * g_sq[:, :1]
    g_loc[:, 1] += locs[:, 1] * g_sq[:, 1]
    g_fbn = np.empty_like(s.fbn)
    g_frame = None
    for k in (2, 1, 0):
        frame, b, gl = s.frames[k], s.fbn[:, :, k + 1], g_loc[k]
        if g_frame is None:
            g_f = gl[:, None] * b  # loc[row] = frame[row] . b
        else:  # frame' = next_frame(frame, d), d = (loc + (fl - |loc|) e_z) / fl
            n1, fl, d, den, kk, sz = s.steps[k]
            g_xy, g_zn = g_frame[:2], g_frame[2]
            g_kk = np.einsum("rcfn,cfn->rfn", g_xy, sz)  # minus the gradient of kk
            g_sz = np.einsum("rcfn,rfn->cfn", g_xy, kk)  # minus the gradient of sz
            g_zt = g_zn - g_sz
            g_d = np.einsum("rcfn,cfn->rfn", frame, g_zt)  # (3, 5, N)
            g_d[:2] -= g_kk / den
            g_d[2] += _dot(g_kk, kk) / den * (d[2] + 1.0 >= EPS_TURN)
            g_fl = (g_d[2] - _dot(g_d, d)) / fl
            g_n1 = g_fl * (n1 >= _E) - g_d[2] / fl
            gl += g_d / fl
            gl += (g_n1 / n1) * locs[k]
            g_f = d[:, None] * g_zt
            g_f[:2] += g_xy
            g_f[2] -= g_sz
            g_f += gl[:, None] * b
        g_fbn[:, :, k + 1] = np.einsum("rcfn,rfn->cfn", frame, gl)  # (faster than out= into the strided slice)
        g_frame = g_f
    # first frame = (-palm, palm x z, z)
    g_y1, g_y2 = g_frame[1].take(_ROLL1, 0), g_frame[1].take(_ROLL2, 0)
    g_palm = s.z1 * g_y2 - s.z2 * g_y1 - g_frame[0]
    g_z = g_frame[2] + g_y1 * s.p2 - g_y2 * s.p1
    g_r += _normalize_backward(g_z, s.z, s.rn, s.rd)
    g_nm = np.zeros((3, 7, n_pose), dtype)
    g_nm[:, _EDGE] = g_edge
    g_nm[:, _PALM] += g_palm
    g_m = _normalize_backward(g_nm[:, 4:], s.mid, s.mn, s.md)
    g_n = g_nm[:, :4]
    g_n[:, 1:] += g_m
    g_n[:, :-1] += g_m
    g_w = _normalize_backward(g_n, s.n, s.wn, s.wd)
    # root angles = atan2(|w|, dots + eps) * fade(|w|^2 + dots^2)
    g_a = g_ra * s.fr
    g_q = g_ra * s.ar * (s.qr <= 1.0)
    g_q *= 2.0 * _E2INV
    den = s.wn * s.wn + s.xr * s.xr
    g_wn = g_a * s.xr / den + s.wn * g_q
    g_dots = s.dots * g_q - g_a * s.wn / den
    g_w += g_wn / s.wn * s.w
    # w = r[1:] x r[:-1]: d/d r[1:] = r[:-1] x g, d/d r[:-1] = g x r[1:]
    g_w1, g_w2 = g_w.take(_ROLL1, 0), g_w.take(_ROLL2, 0)
    g_r[:, 1:] += s.r1[:, :-1] * g_w2 - s.r2[:, :-1] * g_w1 + g_dots * r[:, :-1]
    g_r[:, :-1] += g_w1 * s.r2[:, 1:] - g_w2 * s.r1[:, 1:] + g_dots * r[:, 1:]
    # unitless bones = bones / scale; scale = rms root-bone length
    g_fbn[:, :, 0] = g_r
    g_fb = g_fbn / scale
    g_scale -= _add((g_fbn * s.fbn).reshape(60, n_pose), 0) / scale
    roots_rule = s.scale == s.scale_raw  # ties (measure zero) go to the root bones
    g_fb[:, :, 0] += (g_scale * roots_rule / (5.0 * s.scale_raw)) * fb[:, :, 0]
    g_fb += (g_scale * ((s.scale == s.scale_all) & ~roots_rule) * (PALM_FLOOR ** 2 / 20.0) / s.scale_all) * fb
    g_fb += (g_l / s.L) * fb
    # bones = joint - parent
    g_j = np.empty((3, 21, n_pose), dtype)
    g_fj = g_j[:, 1:].reshape(3, 5, 4, n_pose)
    np.subtract(g_fb[:, :, :-1], g_fb[:, :, 1:], out=g_fj[:, :, :-1])
    g_fj[:, :, -1] = g_fb[:, :, -1]
    np.negative(_add(g_fb[:, :, 0], 1), out=g_j[:, 0])
    return g_j


class _FusedBMC(torch.autograd.Function):
    """joints ``(N, 21, 3)`` -> ``total, bone_length, root_bone, angle`` (reduced as asked) and,
    for ``reduction="none"``, the per-element terms ``(20, N)``, ``(8, N)``, ``(15, N)``."""

    @staticmethod
    def forward(ctx, joints: Tensor, consts: tuple, ref_fk: tuple[int, int], reduction: str):
        low, high, normals, normals_t, offsets, weights = consts
        j = np.ascontiguousarray(joints.detach().numpy().transpose(2, 1, 0))
        s, per = _forward(j, low, high, normals, offsets, ref_fk)  # per (43, N)
        ctx.state, ctx.consts, ctx.ref_fk, ctx.reduction = s, consts, ref_fk, reduction
        ctx.set_materialize_grads(False)
        if reduction == "none":
            terms = torch.from_numpy(weights @ per)  # (4, N): total, bl, rb, a
            return (*terms.unbind(), *(torch.from_numpy(per[rows]) for rows in (slice(20), slice(20, 28),
                                                                                  slice(28, None))))
        terms = weights @ _add(per, 1)
        return torch.from_numpy(terms / per.shape[1] if reduction == "mean" else terms).unbind()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor | None):
        s = ctx.state
        weights = ctx.consts[5]
        n_pose = s.fb.shape[-1]
        dtype = s.fb.dtype
        if ctx.reduction == "none":
            g = np.zeros((4, n_pose), dtype)
            for i, x in enumerate(grads[:4]):
                if x is not None:
                    g[i] = x.numpy()
            g_per = weights.T @ g  # (43, N)
            for x, rows in zip(grads[4:], (slice(20), slice(20, 28), slice(28, None))):
                if x is not None:
                    g_per[rows] += x.numpy()
        else:
            g = np.array([0.0 if x is None else float(x) for x in grads], dtype)
            g_per = (weights.T @ g)[:, None]  # (43, 1), broadcast over poses
            if ctx.reduction == "mean":
                g_per /= n_pose
        g_j = _backward(s, g_per[:28], g_per[28:], ctx.consts[3], ctx.ref_fk)
        return torch.from_numpy(np.ascontiguousarray(g_j.transpose(2, 1, 0))), None, None, None


def loss_weights(lambdas: tuple[float, float, float], dtype: np.dtype) -> np.ndarray:
    """``(4, 43)``: the total and the three term means as linear maps of the 43 per-element terms."""
    w = np.zeros((4, 43), dtype)
    for row, (rows, lam) in enumerate(zip((slice(20), slice(20, 28), slice(28, 43)), lambdas), start=1):
        w[row, rows] = 1.0 / (rows.stop - (rows.start or 0))
        w[0, rows] = lam * w[row, rows]
    return w


def bmc_terms(joints: Tensor, consts: tuple, ref_fk: tuple[int, int], reduction: str) -> tuple[Tensor, ...]:
    """The BMC loss of CPU joints ``(N, 21, 3)`` (float32 or float64) with the hand-written
    backward: ``total, bone_length, root_bone, angle`` reduced by ``reduction`` (``(N,)`` each
    for ``"none"``, then also the per-element terms ``(20, N)``, ``(8, N)``, ``(15, N)``).
    ``consts`` are numpy arrays in the joints' dtype: ``low (28, 1)``, ``high (28, 1)``, the polygons'
    ``normals (15, M, 2)``, the same transposed with a row of ones ``(15, 3, M)``, ``offsets (15, M, 1)`` and
    :func:`loss_weights`; ``ref_fk`` is the reference bone's (finger, bone)."""
    return _FusedBMC.apply(joints, consts, ref_fk, reduction)
