"""Markdown and CSV tables of the benchmark's results, written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..results import write_text_atomic

__all__ = ["frame_markdown", "write_table"]


def write_table(summary: pd.DataFrame, path_stem: str | os.PathLike, markdown: str) -> Path:
    """``<stem>.csv`` and ``<stem>.md``, each written atomically."""
    stem = Path(path_stem)
    write_text_atomic(stem.with_suffix(".csv"), summary.to_csv(index=False, float_format="%.6g"))
    return write_text_atomic(stem.with_suffix(".md"), markdown + "\n")


def frame_markdown(df: pd.DataFrame, digits: int = 2) -> str:
    """A Markdown table of a DataFrame (floats with ``digits`` decimals, NaN as "n/a")."""
    def cell(v):
        if isinstance(v, float):
            return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"
        return str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
