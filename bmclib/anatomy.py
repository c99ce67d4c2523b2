"""Literature numbers for the human hand, with their sources.

The synthetic generator, the default BMC limits and the tests read these; nothing
else in bmclib should carry an anatomical constant.

Convention:
    Lengths in millimetres or as fractions of hand length HL (wrist crease to middle
    fingertip); HB is hand breadth across the metacarpal heads. Angles in degrees in
    this module (convert with ``math.radians``). For the joint angles of
    :mod:`bmclib.biomech`: flexion positive towards the palm (hyperextension
    negative); abduction positive towards the radial (thumb) side for the fingers,
    and away from the index finger (radial abduction) for the thumb. The published
    ranges below were read in that convention; for the thumb CMC, whose anatomical
    zero differs from the frame of :mod:`bmclib.biomech`, the mapping is approximate.

Example:
    >>> round(SEGMENT_RATIOS["middle"][1] * HAND_SIZE["male"].length_mean, 1)
    51.4
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HandSize", "HAND_SIZE", "SEGMENT_RATIOS", "SEGMENT_NOISE_CV", "PALM_JOINTS",
    "RING_LITTLE_ARCH", "PALM_VOLAR_OFFSET", "MCP_ABDUCTION_FLEXION_COUPLING", "BROAD_DIP_PIP_BAND",
    "THUMB_OPPOSITION_BAND", "RangeOfMotion", "RANGE_OF_MOTION", "PIP_DIP_COUPLING",
    "NEIGHBOUR_SPREAD_MAX", "FUNCTIONAL_MEAN_FLEXION", "FUNCTIONAL_RANGE_90",
    "CAMERAS", "HINGE_ABDUCTION_TOLERANCE",
]


@dataclass(frozen=True)
class HandSize:
    """Hand length / breadth statistics in mm (ANSUR II 2012 public data, derived)."""

    n: int
    length_mean: float
    length_sd: float
    length_p5: float
    length_p95: float
    breadth_mean: float
    breadth_sd: float
    corr: float  # Pearson correlation of hand length and hand breadth


#: ANSUR II (2012) anthropometric survey, public release; HL = hand length, HB = hand breadth.
HAND_SIZE: dict[str, HandSize] = {
    "male": HandSize(n=4082, length_mean=193.3, length_sd=9.9, length_p5=177.0, length_p95=210.0,
                     breadth_mean=88.3, breadth_sd=4.4, corr=0.58),
    "female": HandSize(n=1986, length_mean=181.1, length_sd=10.1, length_p5=165.0, length_p95=199.0,
                       breadth_mean=78.2, breadth_sd=3.8, corr=0.57),
}

#: Segment lengths as fractions of HL (Buchholz, Armstrong & Goldstein 1992, J. Biomed. Eng.).
#: Per finger: (metacarpal, proximal, middle, distal-to-tip). The thumb has no middle
#: phalanx: its entries are (metacarpal CMC->MCP, proximal MCP->IP, None, distal IP->tip).
SEGMENT_RATIOS: dict[str, tuple[float, float, float | None, float]] = {
    "thumb": (0.251, 0.196, None, 0.158),
    "index": (0.374, 0.245, 0.143, 0.097),
    "middle": (0.373, 0.266, 0.170, 0.108),
    "ring": (0.336, 0.244, 0.165, 0.107),
    "little": (0.295, 0.204, 0.117, 0.093),
}

#: Per-segment coefficient of variation not explained by HL. Assumption (ANATOMY.md:
#: "HL explains most but not all variance ... about 3-5% CV"); we use the middle.
SEGMENT_NOISE_CV = 0.04

#: Joint centres from the wrist crease: (axial x HL, radio-ulnar x HB, radial positive)
#: (Buchholz et al. 1992). The thumb entry is the CMC joint, the others the MCP joints.
PALM_JOINTS: dict[str, tuple[float, float]] = {
    "thumb": (0.073, +0.196),
    "index": (0.447, +0.251),
    "middle": (0.446, 0.0),
    "ring": (0.409, -0.206),
    "little": (0.368, -0.402),
}

#: Largest ring and little carpometacarpal flexion, which lets the palm arch, degrees:
#: (low, high) of that maximum across people; a flat palm (0) is always possible.
RING_LITTLE_ARCH: dict[str, tuple[float, float]] = {"ring": (10.0, 15.0), "little": (15.0, 30.0)}

#: Out-of-plane palm geometry: how far each ray's root joint (thumb CMC, finger MCPs) lies
#: palmar (volar) of the plane through the wrist and the middle MCP, as a fraction of HB;
#: (low, high) across people, drawn uniformly per hand. Qualitative anatomy (Kapandji, *The
#: Physiology of the Joints*, vol. 1, "the hand"): the trapezium, and with it the thumb's
#: carpometacarpal joint, sits palmar of the plane of the other carpal bones (the thenar
#: eminence), and the distal transverse (metacarpal) arch has the third metacarpal head as its
#: keystone with the second a little palmar of it; the fourth and fifth rays' palmar descent
#: comes from their carpometacarpal flexion (:data:`RING_LITTLE_ARCH`). The magnitudes are an
#: assumption (no survey gives joint-centre offsets directly): thumb CMC 0.08-0.18 HB (about
#: 7-16 mm for a mean male hand, within a palm 25-30 mm thick), index MCP 0-0.04 HB (0-3.5 mm).
#: Before these, the thumb, index and middle root bones lay in one plane, so two of the four
#: palm curvatures were the same constant for every hand (a zero-width fitted interval).
PALM_VOLAR_OFFSET: dict[str, tuple[float, float]] = {
    "thumb": (0.08, 0.18), "index": (0.0, 0.04), "middle": (0.0, 0.0), "ring": (0.0, 0.0), "little": (0.0, 0.0),
}

#: Finger MCP abduction narrows with flexion: the collateral ligaments are slack in extension
#: and taut in flexion, so the fingers spread widely only when the MCP is extended (Kapandji,
#: vol. 1; the reason a fist cannot spread its fingers). The broad sampler scales each MCP's
#: abduction range by ``1 - k * clip(flexion / 90 deg, 0, 1)`` with this ``k`` (assumption: at
#: 90 degrees a quarter of the range is left).
MCP_ABDUCTION_FLEXION_COUPLING = 0.75

#: The broad sampler's DIP-PIP coupling: DIP = ratio x PIP (:data:`PIP_DIP_COUPLING`) plus a
#: uniform offset of +- this many degrees: wider than natural use, still coupled (assumption;
#: an isolated DIP or PIP flexion against the other is possible but limited, Rijpkema & Girard 1991).
BROAD_DIP_PIP_BAND = 30.0

#: Thumb CMC opposition in the broad sampler: flexion and abduction move together along the
#: opposition path (from extended / radially abducted to flexed / adducted towards the little
#: finger, Kapandji's opposition cone seen in these two angles) plus a uniform offset of +- this
#: share of each range (assumption).
THUMB_OPPOSITION_BAND = 0.25


@dataclass(frozen=True)
class RangeOfMotion:
    """Active range of one joint in degrees: (min, max) flexion and abduction."""

    flexion: tuple[float, float]
    abduction: tuple[float, float]
    source: str


#: Hinge joints (PIP, DIP, thumb IP) have no active abduction; annotation noise and
#: soft-tissue play still move the fitted angle a little. Assumption: +-10 degrees.
HINGE_ABDUCTION_TOLERANCE = 10.0

_H = (-HINGE_ABDUCTION_TOLERANCE, HINGE_ABDUCTION_TOLERANCE)
#: Active ranges of motion per finger and joint, thumb -> little, proximal -> distal
#: (thumb: CMC, MCP, IP; fingers: MCP, PIP, DIP), in the sign convention above.
#: Sources: AAOS (American Academy of Orthopaedic Surgeons) joint motion tables;
#: Cobos et al. 2008; Pena-Pitarch / Sancho-Bru hand models; Lin, Wu & Huang 2000.
RANGE_OF_MOTION: dict[str, tuple[RangeOfMotion, RangeOfMotion, RangeOfMotion]] = {
    "thumb": (
        RangeOfMotion((-25.0, 35.0), (-30.0, 60.0), "thumb CMC, Sancho-Bru model"),
        RangeOfMotion((-10.0, 80.0), (-15.0, 15.0), "thumb MCP, AAOS 50 / Cobos 75; abduction: assumption"),
        RangeOfMotion((-15.0, 80.0), _H, "thumb IP, AAOS 80"),
    ),
    "index": (
        RangeOfMotion((-10.0, 90.0), (-15.0, 40.0), "MCP: AAOS, Cobos 2008; abduction Pena-Pitarch"),
        RangeOfMotion((0.0, 110.0), _H, "PIP: Cobos 2008 (AAOS 100)"),
        RangeOfMotion((-5.0, 90.0), _H, "DIP: AAOS 90"),
    ),
    "middle": (
        RangeOfMotion((-10.0, 90.0), (-8.0, 35.0), "MCP: AAOS, Cobos 2008; abduction Pena-Pitarch"),
        RangeOfMotion((0.0, 110.0), _H, "PIP: Cobos 2008"),
        RangeOfMotion((-5.0, 90.0), _H, "DIP: AAOS 90"),
    ),
    "ring": (
        RangeOfMotion((-10.0, 90.0), (-14.0, 20.0), "MCP: AAOS, Cobos 2008; abduction Pena-Pitarch"),
        RangeOfMotion((0.0, 120.0), _H, "PIP: Cobos 2008 (ring 120)"),
        RangeOfMotion((-5.0, 90.0), _H, "DIP: AAOS 90"),
    ),
    "little": (
        RangeOfMotion((-10.0, 90.0), (-40.0, 30.0), "MCP: AAOS, Cobos 2008; abduction Pena-Pitarch"),
        RangeOfMotion((0.0, 135.0), _H, "PIP: Cobos 2008 (little 135)"),
        RangeOfMotion((-5.0, 90.0), _H, "DIP: AAOS 90"),
    ),
}

#: DIP flexion ~= 2/3 PIP flexion (Rijpkema & Girard 1991); noise to use, degrees.
PIP_DIP_COUPLING = {"ratio": 2.0 / 3.0, "noise_deg": 10.0}

#: Largest angular spread between neighbouring fingers, degrees.
NEIGHBOUR_SPREAD_MAX = {"thumb-index": 53.0, "index-middle": 17.0, "middle-ring": 14.0, "ring-little": 32.0}

#: Mean flexion during functional use, degrees (Hume et al. 1990).
FUNCTIONAL_MEAN_FLEXION = {"mcp": 61.0, "pip": 60.0, "dip": 39.0, "thumb_mcp": 21.0, "thumb_ip": 18.0}
#: Ranges holding 90% of daily activities, degrees (Bain et al. 2015).
FUNCTIONAL_RANGE_90 = {"mcp": (19.0, 71.0), "pip": (23.0, 87.0), "dip": (10.0, 64.0)}

#: Camera intrinsics of real benchmarks: image size (W, H) and typical focal length in px.
CAMERAS = {
    "freihand": {"image": (224, 224), "fx": 500.0, "fx_p5": 348.0, "fx_p95": 672.0, "principal": (112.0, 112.0)},
    "rhd": {"image": (320, 320), "fx": None},  # per-sample K
    "stb": {"image": (640, 480), "fx": 823.0},
    "ho3d": {"image": (640, 480), "fx": 614.0},
    # a 190 mm hand filling ~70% of a 224 px crop at f ~ 500 px sits at ~0.6 m;
    # synthetic pipelines use 0.5-0.8 m.
    "distance_m": (0.5, 0.8),
}

#: Capsule radii for rendering, as fractions of hand breadth HB. Assumption, from
#: typical adult finger widths (about 16-22 mm at the proximal phalanx) and palm
#: thickness (about 25-30 mm); there is no single survey for these.
RENDER_RADIUS_FRACTION = {
    "thumb": (0.115, 0.105, 0.095),   # metacarpal, proximal, distal
    "finger": (0.100, 0.090, 0.080),  # proximal, middle, distal phalanx
    "little_scale": 0.85,             # the little finger is thinner
    "palm": 0.13,                     # root bones and the web between the MCP joints
}

#: Skin reflectance (sRGB, 0-1) from light to dark; the generator interpolates between
#: neighbours. Assumption: a coarse palette spanning Fitzpatrick types I-VI.
SKIN_TONES = (
    (0.96, 0.80, 0.69), (0.90, 0.72, 0.58), (0.80, 0.60, 0.46),
    (0.66, 0.47, 0.33), (0.49, 0.33, 0.22), (0.33, 0.22, 0.15),
)
