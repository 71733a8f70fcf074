"""The one strict loader of settings: a mapping (a YAML section, a saved JSON) into a frozen dataclass.

Torch-free, on the bottom floor. The dataclass *is* the schema: its fields are the valid keys and
its type hints the valid values, with ``Literal[...]`` for a small set of strings (the message then
lists them, generated from the type, so it cannot drift). An unknown key or a value of the wrong
type is an error naming where it is, the value and what is valid; nothing is silently dropped or
converted (a YAML ``"3"`` is not the integer 3, ``true`` is not 1).

Supported hints: ``bool``, ``int``, ``float`` (an integer is accepted and converted), ``str``,
``Literal[...]`` of strings, ``tuple[T, ...]`` and ``tuple[T1, T2]`` (from a YAML list), and unions
of those with ``None`` (``int | None``, ``int | Literal["all"]``).

Example::

    @dataclass(frozen=True)
    class Section:
        steps: int = 10
        clock: Literal["cpu", "wall"] = "cpu"

    load_section(Section, {"steps": 3}, "pipeline")      # Section(steps=3, clock='cpu')
    load_section(Section, {"clock": "gpu"}, "pipeline")  # UserError: pipeline.clock = 'gpu': expected one of ['cpu', 'wall']
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import fields
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from sned.supernet.base.errors import UserError

T = TypeVar("T")
ErrorType = Callable[[str], Exception]


def check_keys(section: Mapping[str, Any], valid: Iterable[str], where: str, *, required: Collection[str] = (),
               error: ErrorType = UserError, hint: str = "") -> None:
    """Refuse keys of ``section`` outside ``valid``, and missing ``required`` keys.

    Args:
        section: the mapping read.
        valid: every accepted key, in the order the message lists them.
        where: where the mapping is (``"train"``, ``"tiny.yaml: pipeline"``), the message's prefix.
        required: keys that must be present.
        error: the exception type to raise (``UserError``; ``SpaceError`` for a space).
        hint: appended to the message (e.g. ``"; was it written by sned fit?"``).
    """
    valid = list(valid)
    unknown = [key for key in section if key not in valid]
    missing = [key for key in required if key not in section]
    if unknown:
        keys = f"key {unknown[0]!r}" if len(unknown) == 1 else "keys " + ", ".join(map(repr, unknown))
        raise error(f"{where}: unknown {keys}; valid keys: {', '.join(valid)}{hint}")
    if missing:
        keys = f"key {missing[0]!r}" if len(missing) == 1 else "keys " + ", ".join(map(repr, missing))
        raise error(f"{where}: missing {keys}{hint}")


def type_name(tp: Any) -> str:
    """How a message names the values of a type hint: ``one of ['v', 'eps']``, ``int``, ``a list of numbers``."""
    origin = get_origin(tp)
    if origin is Literal:
        return f"one of {list(get_args(tp))}"
    if _is_union(tp):
        return " or ".join(type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        items = get_args(tp)
        return "a list of numbers" if items[1:] == (Ellipsis,) else f"a list of {len(items)} numbers"
    return getattr(tp, "__name__", str(tp))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) is Union or isinstance(tp, types.UnionType)


def coerce(value: Any, tp: Any, where: str, *, error: ErrorType = UserError) -> Any:
    """``value`` checked against the type hint ``tp`` (tuples built from lists, ints widened to float).

    Raises:
        error: naming ``where``, the value and the expected values (:func:`type_name`).
    """
    origin = get_origin(tp)
    if _is_union(tp):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where, error=error)
            except Exception:  # noqa: BLE001 - the next option may fit; the union's message follows
                continue
        raise error(f"{where} = {value!r}: expected {type_name(tp)}")
    if origin is Literal:
        if isinstance(value, str) and value in get_args(tp):
            return value
        raise error(f"{where} = {value!r}: expected {type_name(tp)}")
    if origin is tuple:
        items = get_args(tp)
        if isinstance(value, (list, tuple)):
            if items[1:] == (Ellipsis,):  # tuple[float, ...]: any length
                return tuple(coerce(v, items[0], f"{where}[{i}]", error=error) for i, v in enumerate(value))
            if len(value) == len(items):
                return tuple(coerce(v, t, f"{where}[{i}]", error=error)
                             for i, (v, t) in enumerate(zip(value, items, strict=True)))
        raise error(f"{where} = {value!r}: expected {type_name(tp)}")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and is_number and isinstance(value, int):
        return value
    if tp is float and is_number:
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    if tp not in (bool, int, float, str):  # pragma: no cover - a schema using another type is a bug
        raise TypeError(f"{where}: unsupported settings type {tp!r}")
    raise error(f"{where} = {value!r}: expected {type_name(tp)}")


def load_section(cls: type[T], section: Any, where: str, *, error: ErrorType = UserError,
                 check: Callable[[str, Any, str], Any] | None = None,
                 parsers: Mapping[str, Callable[[Any, str], Any]] | None = None) -> T:
    """A ``cls`` (a dataclass) from a mapping: every key optional, unknown keys and wrong types refused.

    Args:
        cls: the dataclass; its fields and type hints are the schema.
        section: the mapping (``None``: all defaults).
        where: where the mapping is, for messages (``f"{where}.{key}"`` names a value).
        error: the exception type to raise.
        check: ``check(key, value, where_of_value)`` after each value is coerced: returns the value
            to keep (or raises) -- for rules a type cannot say (a positive number, a range).
        parsers: ``{key: parse(value, where_of_value)}`` for keys whose values a type hint cannot
            describe (``"all"`` or a count): the parser replaces the type check for that key.

    Returns:
        ``cls(**section)`` with coerced values (``__post_init__`` checks, if any, run as usual).
    """
    if section is None:
        return cls()
    if not isinstance(section, Mapping):
        raise error(f"{where}: expected a mapping of settings, got {type(section).__name__}")
    hints = typing.get_type_hints(cls)
    check_keys(section, [f.name for f in fields(cls)], where, error=error)
    kwargs = {}
    parsers = parsers or {}
    for key, value in section.items():
        at = f"{where}.{key}"
        value = parsers[key](value, at) if key in parsers else coerce(value, hints[key], at, error=error)
        kwargs[key] = check(key, value, at) if check is not None else value
    return cls(**kwargs)


__all__ = ["check_keys", "coerce", "load_section", "type_name"]
