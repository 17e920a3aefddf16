"""cancel_and_wait: every task has ended when it returns, however it met the cancellation."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from shared.tasks import cancel_and_wait


async def test_a_task_that_outlives_one_cancellation_is_cancelled_until_it_ends() -> None:
    """A lost cancellation (asyncio.wait_for on Python 3.11 returns a result that arrives
    with it) leaves the task running into its next wait; it is cancelled there too."""
    lost = asyncio.Event()

    async def reader() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            lost.set()  # carries on, as if the cancellation had never come
        await asyncio.sleep(60)

    tasks = [asyncio.create_task(reader()) for _ in range(3)]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks)
    assert lost.is_set()
    assert all(task.cancelled() for task in tasks)


async def test_an_error_a_task_ended_with_is_logged() -> None:
    """Ended before or while it is stopped, a task's error is reported once, not dropped."""

    async def broken() -> None:
        raise ValueError("bad batch")

    task = asyncio.create_task(broken(), name="outbox-0")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await cancel_and_wait([task])
    assert [(e["event"], e["task"]) for e in logs] == [("task ended with an error", "outbox-0")]
    assert "bad batch" in logs[0]["error"]
