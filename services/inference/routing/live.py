"""The current routing table, swapped atomically, with adapters closed once unused.

Requests take the current table with :meth:`LiveTable.use` and keep it until they
end, so a swap never changes the table under a running request. A replaced table
releases its adapters when its last request ends; adapters no newer table reuses
are then closed in the background (:meth:`LiveTable.aclose` waits for that).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from provider_adapters.base import ProviderAdapter
from services.inference.routing.adapters import AdapterPool
from services.inference.routing.table import RoutingTable

_log = logging.getLogger("llmgw.inference.routing")


@dataclass(slots=True)
class _Slot:
    table: RoutingTable
    users: int = 0
    retired: bool = False


class LiveTable:
    """Holds the current table; one per router."""

    def __init__(self, table: RoutingTable, pool: AdapterPool) -> None:
        self._pool = pool
        self._slot = _Slot(table)
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def table(self) -> RoutingTable:
        """The current table (for reads that do not call adapters)."""
        return self._slot.table

    @contextmanager
    def use(self) -> Iterator[RoutingTable]:
        """The current table, kept alive (adapters open) until the block ends."""
        slot = self._slot
        slot.users += 1
        try:
            yield slot.table
        finally:
            slot.users -= 1
            if slot.retired and slot.users == 0:
                self._release(slot)

    def swap(self, table: RoutingTable) -> None:
        """Make ``table`` current; the old one is released once idle."""
        old, self._slot = self._slot, _Slot(table)
        old.retired = True
        if old.users == 0:
            self._release(old)

    async def aclose(self) -> None:
        """Retire the current table and close every adapter (waiting for closings)."""
        self._slot.retired = True
        self._close(self._pool.drain())
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _release(self, slot: _Slot) -> None:
        self._close(self._pool.release(slot.table.adapter_keys))

    def _close(self, adapters: list[ProviderAdapter]) -> None:
        for adapter in adapters:
            task = asyncio.get_running_loop().create_task(_close_quietly(adapter))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


async def _close_quietly(adapter: ProviderAdapter) -> None:
    try:
        await adapter.aclose()
    except Exception:
        _log.warning("closing adapter %s failed", type(adapter).__name__, exc_info=True)
