"""Scoped torch CPU-thread settings: set a thread count for one block, then restore the caller's.

``torch.set_num_threads`` changes the whole process (its intra-op pool, and OpenMP/MKL under it),
so a library function that calls it bare changes every later computation of its caller. Use
:func:`torch_threads` instead wherever sned needs a specific count (latency sessions, Ray trials)::

    with torch_threads(1):
        ms = time_it(model)        # one thread here
    # the caller's thread count again
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)``; restore the previous count on every exit.

    The setting is process-wide while the block runs (torch has no per-thread setting), so two
    threads that enter this with different counts at once see whichever was set last.

    Args:
        threads: intra-op CPU threads for the block, >= 1; ``None`` keeps the current count (and still
            restores it afterwards).

    Yields:
        The thread count in effect inside the block.

    Raises:
        ValueError: ``threads`` is not a positive integer.
    """
    import torch

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:  # also undoes a bare set_num_threads inside the block
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


__all__ = ["torch_threads"]
