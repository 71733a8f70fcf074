"""Starting Ray the one way every sned command does (torch-free): a given cluster, or a private instance.

``sned-train --workers N``, ``sned evaluate``, ``sned-search --verify`` and ``sned serve --ray`` all
call :func:`start_ray`:

1. **An address** (``--address``, else the ``RAY_ADDRESS`` variable that ``ray job submit`` sets for
   its drivers): connect there. A plain ``host:port`` or ``ray://host:port`` that nothing listens on
   is refused at once (Ray itself would retry for minutes, logging every attempt).
2. **No address**: start a private local instance (``address="local"``) in its own temp dir, with no
   dashboard, whatever else runs on this machine. Ray's own default without an address is to join
   the head named in ``/tmp/ray/ray_current_cluster`` (the last ``ray start``), and then to refuse
   the ``num_cpus`` a local start needs, or to hang on a head that has since died.
3. **Ray fails** to start or connect: :class:`~sned.supernet.base.errors.UserError`, which the CLIs print
   as one line with exit code 2.

The environment variables set here (``RAY_TMPDIR``, so the workers inherit the private temp dir,
and the caller's ``environ``) last only as long as the session::

    with start_ray(None, num_cpus=4):
        ...                       # Ray Train / Tune work
    # Ray stopped (if this call started it), the environment and the temp dir as they were
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sned.supernet.base.errors import SettingError, UserError

# What start_ray may set: always RAY_DISABLE_USAGE_STATS, and RAY_TMPDIR for a private instance.
RAY_ENVIRON: tuple[str, ...] = ("RAY_DISABLE_USAGE_STATS", "RAY_TMPDIR")
PROBE_SECONDS = 5.0  # how long a TCP probe of a cluster address may take


@contextlib.contextmanager
def environ_restored(keys: Sequence[str]) -> Iterator[None]:
    """Restore ``os.environ[key]`` for each of ``keys`` (or its absence) when the block exits."""
    saved = _save_environ(keys)
    try:
        yield
    finally:
        _restore_environ(saved)


@dataclass
class RaySession:
    """Ray as :func:`start_ray` left it; :meth:`stop` (or leaving the ``with`` block) undoes that.

    Attributes:
        started: this call started Ray (a private local instance or a connection), so ``stop``
            shuts it down; False when Ray was already initialised in this process.
        address: the cluster address connected to; None for a private local instance (or when Ray
            was already running).
        temp_dir: the private instance's temp dir (removed by ``stop``); None otherwise.
    """

    started: bool
    address: str | None
    temp_dir: str | None
    _saved_environ: dict[str, str | None] = field(default_factory=dict, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Shut Ray down if this session started it, restore the environment, remove the temp dir."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.started:
                import ray

                ray.shutdown()
        finally:
            _restore_environ(self._saved_environ)
            if self.temp_dir:
                shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> RaySession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_ray(address: str | None = None, *, num_cpus: int | None = None, environ: Mapping[str, str] | None = None,
              logging_level: int = logging.ERROR, log_to_driver: bool = False) -> RaySession:
    """Connect to ``address`` or start a private local Ray instance (see the module docstring).

    Args:
        address: a cluster address (``auto``, ``host:6379``, ``ray://host:10001``); None: the
            ``RAY_ADDRESS`` variable if set, else a private local instance.
        num_cpus: CPUs of a private local instance (None: Ray counts this machine's); ignored when
            connecting, since a cluster has its own.
        environ: variables to set (unless already set) for the session, e.g. Tune's output engine.
        logging_level: level of the driver's ``ray`` logger.
        log_to_driver: forward the workers' stdout/stderr to this process.

    Returns:
        The session; call :meth:`RaySession.stop` (or use it as a context manager) when done. If
        Ray was already initialised in this process it is used as it is and left running.

    Raises:
        UserError: nothing listens at the address, or Ray failed to connect or to start.
    """
    extra = dict(environ or {})
    saved = _save_environ((*RAY_ENVIRON, *extra))
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    for key, value in extra.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return RaySession(False, None, None, saved)
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target and target != "local":
        try:
            _check_listening(target)
            ray.init(address=target, logging_level=logging_level, log_to_driver=log_to_driver)
        except Exception as exc:
            with contextlib.suppress(Exception):
                ray.shutdown()
            _restore_environ(saved)
            source = "{address}" if address else "RAY_ADDRESS"
            raise SettingError("address", "could not connect to the Ray cluster at " + source + " {target}: {reason}; "
                               "check that its head runs (`ray status --address ...`), or leave out {address} (and "
                               "RAY_ADDRESS) to start a private local Ray", target=target, reason=_reason(exc)) from exc
        return RaySession(True, target, None, saved)
    temp_dir = tempfile.mkdtemp(prefix="sned-ray-")  # short: Ray's socket paths must stay under 107 bytes
    # RAY_TMPDIR too: the workers inherit it, so nothing of this run lands in the shared /tmp/ray.
    os.environ["RAY_TMPDIR"] = temp_dir
    try:
        # "local": a fresh instance of our own, even where `ray start` left a head (live or dead) in
        # /tmp/ray/ray_current_cluster; the dashboard costs memory and a port for nothing here.
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp_dir,
                 logging_level=logging_level, log_to_driver=log_to_driver)
    except Exception as exc:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _restore_environ(saved)
        shutil.rmtree(temp_dir, ignore_errors=True)
        reason = _reason(exc)
        hint = "set TMPDIR to a shorter dir" if "path length" in reason else "set SNED_DEBUG=1 for Ray's traceback"
        raise UserError(f"Ray did not start a local instance: {reason}; {hint}") from exc  # SNED_DEBUG shows it
    return RaySession(True, None, temp_dir, saved)


def _check_listening(address: str) -> None:
    """Raise ConnectionError at once if nothing accepts TCP connections at ``address``'s host and port."""
    if address == "auto":
        # Resolved as ray.init would (RAY_ADDRESS, then the last `ray start`'s file); raises
        # ConnectionError if neither names a cluster. A private API: skip the probe where it moved.
        try:
            from ray._private.services import canonicalize_bootstrap_address
        except ImportError:
            return
        address = canonicalize_bootstrap_address("auto") or ""
    host, _, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        return  # not host:port; let Ray judge it
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        raise ConnectionError(f"nothing listens at {host}:{port} ({exc.strerror or exc})") from None


def _reason(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (Ray's can span many), capped at 300 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _save_environ(keys: Sequence[str]) -> dict[str, str | None]:
    return {key: os.environ.get(key) for key in keys}


def _restore_environ(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


__all__ = ["RAY_ENVIRON", "RaySession", "environ_restored", "start_ray"]
