"""The bottom floor every room shares: torch-free, stdlib-only, importing nothing else of sned.

* :mod:`~sned.supernet.base.errors`: ``UserError``, ``SettingError``, ``SpaceError`` (bad input);
* :mod:`~sned.supernet.base.files`: the one atomic writer (text, bytes, JSON, a path, a folder)
  and content hashes;
* :mod:`~sned.supernet.base.settings`: the one strict loader of settings into frozen dataclasses
  (``Literal`` types, unknown keys refused);
* :mod:`~sned.supernet.base.provenance`: the sned commit and package versions;
* :mod:`~sned.supernet.base.artifacts`: the names of an experiment's artifact files;
* :mod:`~sned.supernet.base.command`: how every ``sned`` command runs (one-line errors, exit 2).

Above it: ``sned.supernet`` (space, network, training) <- ``sned.predictors`` <- ``sned.search``;
no module imports a room above its own (``tests/test_layering.py``).
"""
