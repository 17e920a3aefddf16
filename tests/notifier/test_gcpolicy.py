"""The notifier's GC policy: long-lived objects leave the collector's scans, cycles still go."""

from __future__ import annotations

import asyncio
import gc
import weakref

from notifier.gcpolicy import manage_gc


class Node:
    """An object that can be part of a reference cycle."""

    def __init__(self) -> None:
        self.peer: Node | None = None


async def test_frozen_objects_are_skipped_until_the_thaw_collects_their_cycles() -> None:
    """A cycle frozen while alive survives full passes; the periodic thaw collects it."""
    task = asyncio.create_task(manage_gc(freeze_s=0.05, thaw_s=1.0))
    try:
        node = Node()
        node.peer = node  # only the cyclic collector can free it
        ref = weakref.ref(node)
        async with asyncio.timeout(10):
            while gc.get_freeze_count() == 0:
                await asyncio.sleep(0.01)
        frozen = gc.get_freeze_count()
        del node
        gc.collect()
        assert ref() is not None, "a frozen object is not walked by a full pass"
        async with asyncio.timeout(10):
            while ref() is not None:  # the thaw runs a full pass over everything
                await asyncio.sleep(0.05)
        assert frozen > 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gc.get_freeze_count() == 0, "stopping hands everything back to the collector"
