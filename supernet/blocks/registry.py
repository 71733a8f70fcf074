"""The block-kind registry: kind name -> :class:`~sned.supernet.blocks.base.BlockKind` (torch-free).

Built-in kinds register when ``sned.supernet.blocks`` is imported. A kind of your own registers with
:func:`register_kind` before the space that names it is loaded, or, for the command-line tools, is
found through the ``sned.blocks`` entry-point group of an installed package::

    [project.entry-points."sned.blocks"]
    token_mlp = "my_package.blocks:TokenMLPKind"   # a BlockKind class or instance

Each kind gets a small integer code in registration order (built-ins first, so their codes never
change); latency tables pack it into their in-memory keys.
"""

from __future__ import annotations

import re
from importlib import metadata

from sned.supernet.blocks.base import BlockKind
from sned.supernet.space_spec import SpaceError

ENTRY_POINT_GROUP = "sned.blocks"

_KINDS: dict[str, BlockKind] = {}
_CODES: dict[str, int] = {}
_BUILTIN: set[str] = set()
_next_code = 0


def register_kind(kind: BlockKind | type[BlockKind], *, builtin: bool = False) -> BlockKind | type[BlockKind]:
    """Register a block kind under ``kind.name``; returns its argument, so it also decorates a class.

    A class is instantiated without arguments. Names are lower-case identifiers (they appear in
    YAML files and latency tables).

    Raises:
        SpaceError: the name is taken or not an identifier, or ``kind`` is not a BlockKind.
    """
    global _next_code
    instance = kind() if isinstance(kind, type) else kind
    if not isinstance(instance, BlockKind):
        raise SpaceError(f"register_kind: expected a BlockKind subclass or instance, got {type(instance).__name__}")
    name = instance.name
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise SpaceError(f"block kind name {name!r}: expected a lower-case identifier such as 'token_mlp'")
    if name in _KINDS:
        raise SpaceError(f"block kind {name!r} is already registered ({_KINDS[name]!r}); pick another name, "
                         f"or unregister_kind({name!r}) first")
    _KINDS[name] = instance
    if name not in _CODES:  # a re-registered name keeps its code: tables indexed before stay valid
        _CODES[name] = _next_code
        _next_code += 1
    if builtin:
        _BUILTIN.add(name)
    return kind


def unregister_kind(name: str) -> None:
    """Remove a registered kind of your own (tests, reloading a plugin). Built-in kinds stay.

    Raises:
        SpaceError: ``name`` is built in or not registered.
    """
    if name in _BUILTIN:
        raise SpaceError(f"block kind {name!r} is built in and cannot be unregistered")
    if name not in _KINDS:
        raise SpaceError(f"block kind {name!r} is not registered; registered: {list(_KINDS)}")
    del _KINDS[name]


def _load_entry_point(name: str) -> None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            register_kind(entry.load())
            return


def get_kind(name: str) -> BlockKind:
    """The kind registered as ``name`` (looking in the ``sned.blocks`` entry points once if unknown).

    Raises:
        SpaceError: naming the kind, the registered kinds and how to add one.
    """
    kind = _KINDS.get(name)
    if kind is None and isinstance(name, str):
        _load_entry_point(name)
        kind = _KINDS.get(name)
    if kind is None:
        raise SpaceError(f"unknown block kind {name!r}; registered: {list(_KINDS)}. Add one with "
                         f"sned.supernet.blocks.register_kind (README: Bring your own block) or an entry "
                         f"point in the {ENTRY_POINT_GROUP!r} group")
    return kind


def kind_names() -> tuple[str, ...]:
    """The registered kinds' names, in registration order (built-ins first)."""
    return tuple(_KINDS)


def kind_code(name: str) -> int:
    """The kind's integer code (its registration index; stable while the process runs)."""
    get_kind(name)
    return _CODES[name]


def kind_of_code(code: int) -> str:
    """The name of the kind with ``code`` (the inverse of :func:`kind_code`)."""
    for name, c in _CODES.items():
        if c == code:
            return name
    raise SpaceError(f"no block kind has code {code}; registered: {dict(_CODES)}")


__all__ = ["ENTRY_POINT_GROUP", "get_kind", "kind_code", "kind_names", "kind_of_code", "register_kind",
           "unregister_kind"]
