"""bmclib: weakly supervised 3D hand pose estimation with biomechanical constraints.

Reference implementation of Spurr et al., "Weakly Supervised 3D Hand Pose Estimation
via Biomechanical Constraints", ECCV 2020.

Modules: :mod:`~bmclib.skeleton` (joint order, converters), :mod:`~bmclib.anatomy`
(literature numbers), :mod:`~bmclib.handmodel` (anatomical hand shapes),
:mod:`~bmclib.biomech` (decompose / compose), :mod:`~bmclib.limits` (BMCLimits),
:mod:`~bmclib.losses` (BMCLoss), :mod:`~bmclib.results` (provenance, atomic writes).
"""
from .biomech import Decomposition, compose, compose_parts, decompose, normalize_scale
from .limits import BMCLimits
from .losses import BMCLoss, BMCLossOutput

__version__ = "0.1.0"
__all__ = ["Decomposition", "decompose", "compose", "compose_parts", "normalize_scale", "BMCLimits", "BMCLoss",
           "BMCLossOutput", "__version__"]
