"""Where the benchmark's files live: the bmc-hand checkout (``results/``, ``notebooks/``).

The library works anywhere; the benchmark reads its pre-registered files, notebooks and
committed results from the checkout. It is found next to the package (a clone, installed
editable) or as the working directory; an installed wheel run elsewhere has none, and a
command that needs it says so (:func:`checkout`).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["find_checkout", "checkout"]


def _is_checkout(root: Path) -> bool:
    return (root / "results" / "benchmark_v2.yaml").is_file() and (root / "notebooks").is_dir()


def find_checkout() -> Path | None:
    """The checkout holding this package (a clone), else the working directory if it is one, else None."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if _is_checkout(root):
            return root
    return None


def checkout(what: str = "this command") -> Path:
    """:func:`find_checkout`, or a ``FileNotFoundError`` saying that ``what`` needs the checkout."""
    root = find_checkout()
    if root is None:
        raise FileNotFoundError(f"{what} needs the bmc-hand checkout (its results/ and notebooks/): run it from a "
                                f"clone of the repository, or give the files' paths explicitly")
    return root
