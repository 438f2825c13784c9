"""Atomic, weights-only checkpoints.

A checkpoint is written to a temporary file in the same directory, fsynced, then renamed over the old one with
``os.replace``: a crash (even kill -9) at any moment leaves either the previous checkpoint or the new one, never a
half-written file. Everything in it is a tensor, number, string, list or dict, so it loads with
``torch.load(..., weights_only=True)``, which cannot run code from a tampered file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

FORMAT = "augpipe-training-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "epoch", "model", "optimizer", "scheduler", "ranks", "history", "config")


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> None:
    """Call write(file) on a temp file next to ``path``, fsync it, and rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file 0600; the result should read like any other
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)  # makes the rename itself durable


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(path: str | os.PathLike, state: dict) -> None:
    atomic_write(path, lambda f: torch.save(dict(state, format=FORMAT, version=VERSION), f))


def load(path: str | os.PathLike) -> dict:
    """Load a training checkpoint on the CPU; a truncated, corrupt or foreign file raises ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint.load: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... depending on the damage
        raise ValueError(f"checkpoint.load: {path} is corrupt or not a torch checkpoint "
                         f"({type(e).__name__}: {e}); delete it to start over") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint.load: {path} is not a training checkpoint written by training.train")
    if state.get("version") != VERSION:
        raise ValueError(f"checkpoint.load: {path} has format version {state.get('version')}, "
                         f"this code reads version {VERSION}")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint.load: {path} lacks {', '.join(missing)}")
    return state
