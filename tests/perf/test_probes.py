"""The probes see a blocked loop, a live process and the Python heap."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.perf import probes
from app.perf.metrics import Recorder
from tests.conftest import wait_until


@pytest.mark.asyncio
async def test_blocked_loop_shows_up_as_lag():
    # A block is under-read by at most the probe's remaining sleep: a 2 ms interval sees >= 48 ms of a 50 ms block.
    probe = probes.LoopLagProbe(Recorder("loop_lag"), interval_s=0.002)
    probe.start()
    await wait_until(lambda: probe.samples >= 3, what="a few unblocked samples")

    async def hog():
        time.sleep(0.05)  # holds the loop, as a careless handler would

    before = probe.samples
    await asyncio.get_running_loop().create_task(hog())
    await wait_until(lambda: probe.samples > before + 1, what="the probe to wake after the block")
    await probe.stop()
    assert probe.worst_ns >= 45_000_000
    snap = probe.recorder.snapshot("all")
    assert snap.max >= 45_000_000
    assert snap.count == probe.samples
    assert snap.p50 < 45_000_000  # most wake-ups were on time


@pytest.mark.asyncio
async def test_stop_is_clean_and_start_idempotent():
    probe = probes.LoopLagProbe(interval_s=0.01)
    t1 = probe.start()
    assert probe.start() is t1
    await probe.stop()
    assert t1.cancelled()
    await probe.stop()  # twice is fine


def test_lag_interval_must_be_positive():
    with pytest.raises(ValueError):
        probes.LoopLagProbe(interval_s=0)


def test_process_probe_samples_rss_and_cpu_into_bounded_history():
    assert probes.rss_bytes() > 0
    probe = probes.ProcessProbe(history=3)
    for _ in range(5):
        s = probe.sample()
    assert s.rss_bytes > 0 and s.cpu_percent >= 0 and s.num_threads >= 1
    assert len(probe.history) == 3
    assert all(mb > 0 for mb in probe.rss_series_mb())


@pytest.mark.asyncio
async def test_sockets_and_tasks_are_counted():
    import socket

    before = probes.open_sockets()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        assert probes.open_sockets() == before + 1
    assert probes.task_count() >= 1  # this test's own task


def test_tracemalloc_top_allocations():
    assert probes.top_allocations(5) == []  # off: nothing, and no cost
    probes.start_tracemalloc()
    try:
        keep = [bytearray(1024) for _ in range(2_000)]  # ~2 MB from one line
        top = probes.top_allocations(5)
        assert top and len(top) <= 5
        where, size_kb, count = top[0]
        assert "test_probes.py" in where and size_kb >= 1_900 and count >= 2_000
        assert probes.tracemalloc_running()
        del keep
    finally:
        probes.stop_tracemalloc()
    assert not probes.tracemalloc_running()


def test_lag_probe_runs_on_the_qasync_loop_the_terminal_uses():
    pytest.importorskip("PySide6")
    from tests.qt_loop import _qasync_loop

    loop = _qasync_loop()

    async def scenario() -> int:
        probe = probes.LoopLagProbe(interval_s=0.002)
        probe.start()
        await wait_until(lambda: probe.samples >= 3, what="samples on qasync")
        time.sleep(0.05)
        await wait_until(lambda: probe.worst_ns > 0 and probe.samples >= 5, what="the late wake-up")
        await probe.stop()
        return probe.worst_ns

    try:
        worst = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert worst >= 45_000_000


async def _lag_of_one_block(block) -> probes.LoopLagProbe:
    probe = probes.LoopLagProbe(Recorder("loop_lag"), interval_s=0.002)
    probe.start()
    await wait_until(lambda: probe.samples >= 3, what="a few unblocked samples")

    async def hog():
        block(0.05)

    before = probe.samples
    await asyncio.get_running_loop().create_task(hog())
    await wait_until(lambda: probe.samples > before + 1, what="the probe to wake after the block")
    await probe.stop()
    return probe


def _spin(seconds: float) -> None:
    """Works for ``seconds`` of this thread's CPU time (however long the machine takes to give it that)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.asyncio
async def test_a_lag_the_loop_spent_working_is_its_own():
    probe = await _lag_of_one_block(_spin)  # the terminal's own work: its thread on the CPU all along
    assert probe.own.snapshot("all").max >= 45_000_000
    assert probe.own.snapshot("all").count == probe.off_cpu.snapshot("all").count == probe.samples


@pytest.mark.asyncio
async def test_a_lag_the_loop_spent_off_the_cpu_is_not_its_own():
    # Sleeping is what a thread does while other programs have the cores or it waits for the X server: it is late
    # all the same, but not because of its own work (the SLOW badge watches the own part).
    probe = await _lag_of_one_block(time.sleep)
    assert probe.recorder.snapshot("all").max >= 45_000_000
    assert probe.off_cpu.snapshot("all").max >= 40_000_000
    assert probe.own.snapshot("all").max < 10_000_000
