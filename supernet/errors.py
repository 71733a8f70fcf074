"""Deprecated home of the exception types: they live in :mod:`sned.supernet.base.errors` (removal in 0.2)."""

from sned.supernet.base.errors import SettingError, SpaceError, UserError

__all__ = ["SettingError", "SpaceError", "UserError"]
