"""Block kinds of the elastic UNet, one file per kind, and the registry that maps a name to each.

In the spirit of timm's ``layers/``: a kind (``res.py``, ``attention.py``, ``sampling.py``,
``stem.py``, ``head.py``) owns everything the rest of sned needs to know about it: how it builds
its elastic module from a slot, its block spec for an arch (the supernet's plan), its exact
analytic params and FLOPs, and its latency-table key and timed inputs. The space
(``sned.supernet.space``), the network (``sned.supernet.model``) and latency measurement
(``sned.predictors.latency_measure``) go through :func:`get_kind` and never branch on a kind's name.

This package is torch-free at import; the torch modules live in :mod:`sned.supernet.blocks.modules`
and each kind imports them inside :meth:`BlockKind.build`. To add a kind see README "Bring your own
block" and :class:`BlockKind`.
"""

from sned.supernet.blocks.attention import ATTN
from sned.supernet.blocks.base import BlockKind, LatencyProbe, Slot, kernel_volume, module_key, same_padding
from sned.supernet.blocks.head import HEAD
from sned.supernet.blocks.registry import (
    ENTRY_POINT_GROUP,
    get_kind,
    kind_code,
    kind_names,
    kind_of_code,
    register_kind,
    unregister_kind,
)
from sned.supernet.blocks.res import RES, RES_PROJ
from sned.supernet.blocks.sampling import DOWN, UP
from sned.supernet.blocks.stem import STEM

# Registration order fixes the built-ins' codes (latency tables pack them): do not reorder.
for _kind in (STEM, RES, RES_PROJ, ATTN, DOWN, UP, HEAD):
    register_kind(_kind, builtin=True)
del _kind

BUILTIN_KINDS: tuple[str, ...] = kind_names()

__all__ = ["BUILTIN_KINDS", "ENTRY_POINT_GROUP", "BlockKind", "LatencyProbe", "Slot", "get_kind", "kind_code",
           "kind_names", "kind_of_code", "kernel_volume", "module_key", "register_kind", "same_padding",
           "unregister_kind"]
