"""The one way sned writes a file, and content hashes (torch-free, on the bottom floor).

Every artifact (tables, predictors, checkpoints, run folders, videos, reports) is written
**atomically**: to a temp file in the same folder, then ``os.replace``-d onto its name, so a reader
or a killed run never sees half a file. Every output gets the mode a plain ``open()`` gives
(``0666 & ~umask``, so ``0644`` under the usual umask): never ``tempfile.mkstemp``'s ``0600``, and a
writer that creates its file more restrictively (safetensors writes ``0600``) is corrected before
the rename. Three forms:

* :func:`write_atomic` for text or bytes, :func:`write_json_atomic` for a JSON document;
* :func:`atomic_path` for writers that need a path (safetensors, parquet, PyAV, PIL, plotly)::

      with atomic_path(out / "weights.safetensors") as tmp:
          save_file(tensors, tmp)

* :func:`atomic_dir` for a folder that must appear whole (a checkpoint).

The temp names start with a dot (``.<stem>.<pid>-<token>.tmp<suffix>``) and keep the target's
suffix, so globs of a folder's artifacts never match them and writers that choose a format by the
file name (PyAV, PIL) still do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _temp_name(path: Path, suffix: str | None = None) -> Path:
    """A fresh hidden sibling of ``path`` ending in ``suffix`` (default: the same suffix); not created."""
    suffix = path.suffix if suffix is None else suffix
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, hence the Linux path first)
    os.umask(mask)
    return mask


def _normalise_mode(path: Path) -> None:
    """Give a written file the mode a plain ``open()`` would have (writers such as safetensors use 0600)."""
    if path.is_file() and not path.is_symlink():
        os.chmod(path, 0o666 & ~_umask())


def _discard(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """``with atomic_path(p) as tmp``: write the file ``tmp`` (same folder, not yet created), then it replaces ``p``.

    ``suffix``: the temp file's suffix, where a writer needs another than ``p``'s (default: ``p``'s).
    On an exception inside the block the temp file is removed and ``p`` is left as it was.
    """
    path = Path(path)
    tmp = _temp_name(path, suffix)
    try:
        yield tmp
        _normalise_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


def write_json_atomic(path: str | Path, payload: Any, indent: int | None = 2) -> Path:
    """Write ``payload`` as a JSON document (with a final newline) to ``path`` atomically; returns ``path``."""
    return write_atomic(path, json.dumps(payload, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """``with atomic_dir(d) as tmp``: fill the new folder ``tmp``, then it replaces ``d`` whole.

    An existing ``d`` is removed just before the rename (a folder cannot be replaced in one step),
    so a reader sees the old folder, no folder, or the complete new one; never a partial one. The
    folder and the files in it get the modes of a plain ``mkdir()`` and ``open()``.
    """
    path = Path(path)
    tmp = _temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            _normalise_mode(file)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            _discard(tmp)


__all__ = ["atomic_dir", "atomic_path", "file_sha256", "write_atomic", "write_json_atomic"]
