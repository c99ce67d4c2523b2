"""What every notebook does first and last: seed and pick the device; write its metrics.

Example:
    >>> dev = setup(0, "cpu", quiet=True)
    >>> dev.type
    'cpu'
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["setup", "write_notebook_metrics"]


def setup(seed: int = 0, device: str = "auto", quiet: bool = False) -> torch.device:
    """Seed python, numpy and torch; pick ``device`` (``"auto"``: CUDA when there is one). Asking
    for CUDA where there is none falls back to the CPU with a visible note. In a notebook kernel,
    progress bars become text lines updated in place (:mod:`bmclib.progress`)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    want = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    if want.startswith("cuda") and not torch.cuda.is_available():
        print(f"NOTE: device {device!r} asked for, but no CUDA device is available: running on the CPU")
        want = "cpu"
    dev = torch.device(want)
    try:  # in a notebook kernel: progress bars that end in their final state in the executed copy
        from IPython import get_ipython

        from .progress import use_display_handles

        shell = get_ipython()
        use_display_handles(shell is not None and type(shell).__name__ == "ZMQInteractiveShell")
    except ImportError:
        pass
    if not quiet:
        name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        print(f"seed {seed}; device {dev} = {name}; torch {torch.__version__}")
    return dev


def write_notebook_metrics(results_root: str | os.PathLike, notebook: str, metrics: dict[str, Any],
                           **prov: Any) -> Path:
    """``<results_root>/notebooks/<notebook>.metrics.json`` with provenance: what a notebook
    measured, for tests and tables to read (never the cell outputs)."""
    from .results import provenance, write_json_atomic

    path = Path(results_root) / "notebooks" / f"{notebook}.metrics.json"
    return write_json_atomic(path, {"metrics": metrics, "provenance": provenance(**prov)})
