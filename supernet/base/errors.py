"""The exception types for bad user input (torch-free, on the bottom floor).

Raise :class:`UserError` for anything a user can fix (a missing file, a corrupt table, a budget no
subnet meets): the ``sned`` CLIs print its message on one line and exit with code 2, no traceback
(:func:`sned.supernet.base.command.run_command`). :class:`SpaceError` (an invalid space or arch,
re-exported by ``sned.supernet.space``) is treated the same way.

Raise :class:`SettingError` when one named setting is at fault, so that each front end can point
at it in its own vocabulary (the CLI's ``--budget-ms``, the HTTP API's ``budget_ms`` field)
without parsing the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class UserError(Exception):
    """Bad input from the user; the message says what is wrong and, where possible, how to fix it."""


class SpaceError(ValueError):
    """An invalid space definition or arch; the message names the field, the value and the valid set."""


class SettingError(UserError):
    """A bad value of one named setting (e.g. a :class:`~sned.search.SearchConfig` field).

    The message is a ``str.format`` template. Its placeholders are either ``values`` or the names
    of settings (``{setting}``: the error's own): ``str(exc)`` writes a setting as its plain name
    (``budget_ms``), and a front end passes its own spelling to :meth:`phrase` (the CLI:
    ``--budget-ms``). So library code never speaks in flags, and no caller parses the text back.
    Example::

        >>> err = SettingError("budget_ms", "{budget_ms} {value!r}: expected ms > 0", value=-1)
        >>> str(err), err.setting
        ('budget_ms -1: expected ms > 0', 'budget_ms')
        >>> err.phrase({"budget_ms": "--budget-ms"})
        '--budget-ms -1: expected ms > 0'

    Args:
        setting: the setting at fault (what an HTTP error's ``field`` names).
        template: the message; ``{name}`` placeholders are ``values`` keys or setting names
            (``{setting}`` stands for ``setting``).
        valid: the accepted values, where they form a small set (else None).
        **values: the template's values (formatted by the template, never parsed as one).
    """

    def __init__(self, setting: str, template: str, *, valid: list[Any] | None = None, **values: Any):
        self.setting, self.template, self.valid, self.values = setting, template, valid, values
        super().__init__(self.phrase())

    def phrase(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each setting spelled as ``names`` says (a name not in it: as itself)."""
        names = names or {}
        return self.template.format_map(_Spelling({"setting": names.get(self.setting, self.setting), **self.values},
                                                  names))

    def __reduce__(self):  # pickles (e.g. out of a Ray worker) with its fields, not only the message
        return _setting_error, (type(self), self.setting, self.template, self.valid, self.values)


def _setting_error(cls: type[SettingError], setting: str, template: str, valid: list[Any] | None,
                   values: dict[str, Any]) -> SettingError:
    return cls(setting, template, valid=valid, **values)


class _Spelling(dict):
    """Template values, falling back to a setting's spelling for any other placeholder."""

    def __init__(self, values: Mapping[str, Any], names: Mapping[str, str]):
        super().__init__(values)
        self.names = names

    def __missing__(self, key: str) -> str:
        return self.names.get(key, key)


__all__ = ["SettingError", "SpaceError", "UserError"]
