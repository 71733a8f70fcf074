"""The elastic video-diffusion supernet.

``sned.supernet.space`` is torch-free; the torch parts (``Supernet`` and friends) load lazily on
first access so that importing the space never pulls in torch.
"""

from typing import Any

__all__ = ["Supernet", "load_space"]


def __getattr__(name: str) -> Any:
    if name == "Supernet":
        from sned.supernet.model import Supernet

        return Supernet
    if name == "load_space":
        from sned.supernet.space import load_space

        return load_space
    raise AttributeError(f"module 'sned.supernet' has no attribute {name!r}")
