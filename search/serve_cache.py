"""The bounded caches of ``sned serve``: a generic LRU, and the search answers (finished and in flight)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A mapping bounded to ``size`` entries: putting one more drops the least recently used.

    Not thread-safe on its own: :class:`SearchService` holds its lock around every call.

    Args:
        size: the most entries kept, >= 1.

    Raises:
        ValueError: ``size`` is not a positive integer.
    """

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"LRU size must be a positive integer, got {size!r}")
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used, dropping the least recently used past ``size``."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class SearchCache:
    """Finished answers (LRU, ``size`` entries) and the searches in flight, by cache key.

    An identical request while the search runs awaits that search instead of starting another.
    All methods run on the server's event loop, so no locks are needed.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self._done: OrderedDict[str, bytes] = OrderedDict()
        self._running: dict[str, asyncio.Task] = {}
        self.searches_run = 0

    def __len__(self) -> int:
        return len(self._done)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    async def get(self, key: str, search: Callable[[], Awaitable[bytes]]) -> tuple[bytes, str]:
        """The answer for ``key`` and where it came from: ``hit``, ``shared`` or ``miss``."""
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key], "hit"
        task = self._running.get(key)
        how = "shared"
        if task is None:
            how = "miss"
            self.searches_run += 1
            task = asyncio.ensure_future(search())
            self._running[key] = task
            task.add_done_callback(lambda t: self._finish(key, t))
        # shield: a client that disconnects cancels its own wait, not the search others wait for.
        return await asyncio.shield(task), how

    def _finish(self, key: str, task: asyncio.Task) -> None:
        self._running.pop(key, None)
        if task.cancelled() or task.exception() is not None:  # .exception() also marks it retrieved
            return
        self._done[key] = task.result()
        while len(self._done) > self.size:
            self._done.popitem(last=False)


__all__ = ["LRU", "SearchCache"]
