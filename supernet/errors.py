"""The one exception type for bad user input (torch-free).

Raise :class:`UserError` for anything a user can fix (a missing file, a corrupt table, a budget no
subnet meets): the ``sned`` CLIs print its message on one line and exit with code 2, no traceback.
``SpaceError`` (from ``sned.supernet.space``) is treated the same way.
"""


class UserError(Exception):
    """Bad input from the user; the message says what is wrong and, where possible, how to fix it."""
