"""Deprecated home of the file helpers: they live in :mod:`sned.supernet.base.files` (removal in 0.2)."""

from sned.supernet.base.files import atomic_dir, atomic_path, file_sha256, write_atomic, write_json_atomic

__all__ = ["atomic_dir", "atomic_path", "file_sha256", "write_atomic", "write_json_atomic"]
