"""Result files with provenance, written atomically.

Every result the project writes records where it came from: time, git commit (and
whether the tree was dirty), torch version, device, and the config that made it.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = ["git_commit", "provenance", "config_hash", "atomic_path", "staging_dir", "replace_dir", "write_text_atomic",
           "write_json_atomic", "read_text", "read_json"]


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that go by it still do) to
    write to. When the block ends it replaces ``path`` (``os.replace``); an exception removes
    it and leaves ``path`` as it was. Every file the project writes goes through here::

        with atomic_path(out) as tmp:
            fig.savefig(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600): give it the old file's mode, or rw-r--r--
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left in ``folder`` when a write was killed
    (``.<name>.<random>.tmp<suffix>``; every file's, or only ``name``'s); returns what was removed.
    Call it where one process owns the folder (a run's start), never beside a concurrent writer."""
    import re

    folder = Path(folder)
    if not folder.is_dir():
        return []
    # exactly what tempfile.mkstemp(prefix=".<name>.", suffix=".tmp<suffix>") makes: 8 random characters
    pattern = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>\.[^.]+)?$")
    gone = []
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m is None or not p.is_file() or (name is not None and m["name"] != name):
            continue
        if (m["suffix"] or "") != Path(m["name"]).suffix:  # atomic_path keeps the target's suffix
            continue
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def staging_dir(final: str | os.PathLike) -> Path:
    """A new hidden folder beside ``final`` to build a whole folder in (removing what a killed
    earlier build left there); :func:`replace_dir` swaps it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for old in final.parent.glob(f".{final.name}.writing-*"):
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.writing-"))


def replace_dir(new: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Put the folder ``new`` at ``final``, deleting what was there only after the swap (two
    renames in one folder: readers see the old folder or the new one)."""
    new, final = Path(new), Path(final)
    if final.exists():
        trash = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
        os.rmdir(trash)
        os.replace(final, trash)
        os.replace(new, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(new, final)
    return final


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path` (flushed to disk first): a crash
    leaves either the old file or the new one, never half of it."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


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
