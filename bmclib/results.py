"""Result files with provenance, written atomically.

Every result the project writes records where it came from: time, git commit (and
whether the tree was dirty), torch version, device, and the config that made it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["git_commit", "provenance", "config_hash", "write_text_atomic", "write_json_atomic", "read_text", "read_json"]


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The checkout's commit (with ``-dirty`` if tracked files outside ``results/`` have
    uncommitted changes: a result being rewritten does not change the code that makes it), or
    ``"unknown"``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def config_hash(config: Any) -> str:
    """Short stable hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def provenance(config: Any = None, **extra: Any) -> dict[str, Any]:
    """Provenance block for a result file (extra keys such as preset, seed, steps are kept)."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (platform.processor() or platform.machine())
    out = {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "config": config,
        "config_hash": config_hash(config),
    }
    out.update(extra)
    return out


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``: a crash
    leaves either the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def read_text(path: str | os.PathLike, missing: str | None = None) -> str:
    """A UTF-8 text file; a missing file raises ``FileNotFoundError`` (``missing`` or a message
    with the path), bytes that are not UTF-8 a ``ValueError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(missing or f"file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_json(path: str | os.PathLike, missing: str | None = None) -> Any:
    """Parse a JSON file; a missing file raises ``FileNotFoundError`` (``missing`` or a message
    with the path), a broken one ``ValueError`` naming the file."""
    text = read_text(path, missing)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the file may be truncated") from None
