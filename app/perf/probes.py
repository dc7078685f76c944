"""Probes of the process itself: event-loop lag, memory and CPU, Python heap, sockets and tasks.

All cheap and bounded. The loop-lag probe is a task that sleeps ``interval_s`` and records how late it wakes; on
qasync the timers are Qt timers with millisecond granularity, so up to ~1 ms of lag is the clock, not the program.
Process samples (psutil) are taken when asked (the panel does it at about 1 Hz) into a bounded history for
sparklines. tracemalloc is off unless started: it slows every allocation while on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections import deque
from dataclasses import dataclass

import psutil

from app.perf.metrics import Recorder

LOOP_LAG = "loop_lag"
LOOP_LAG_OWN = "loop_lag_own"  # the part of a lag the loop's thread was on the CPU for (LoopLagProbe.run)
LOOP_LAG_OFF_CPU = "loop_lag_off_cpu"  # the part it was not


class LoopLagProbe:
    """Measures how late the event loop runs a timer: ``interval_s`` sleeps, lag = wake time - due time.

    Works on any asyncio loop (plain or qasync). ``recorder`` receives each lag in ns; ``last_ns`` and ``worst_ns``
    are the newest and the worst since start. A block of B seconds that starts while the probe still has r seconds
    to sleep shows as a lag of B - r, so a block is seen in full only up to ``interval_s``: the default 20 ms keeps
    that error small at a cost of 50 wake-ups a second (a few µs each).
    """

    def __init__(self, recorder: Recorder | None = None, interval_s: float = 0.02,
                 off_cpu: Recorder | None = None, own: Recorder | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.recorder = recorder if recorder is not None else Recorder(LOOP_LAG)
        self.off_cpu = off_cpu if off_cpu is not None else Recorder(LOOP_LAG_OFF_CPU)
        self.own = own if own is not None else Recorder(LOOP_LAG_OWN)
        self.interval_s = interval_s
        self.samples = 0
        self.last_ns = 0
        self.worst_ns = 0
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Each lag is also split by the CPU time the loop's thread had over the whole sleep: ``own`` =
        min(lag, that CPU time), the most of the lag the terminal's own callbacks can have made (an upper bound:
        the CPU time includes the work done while the probe slept), and ``off_cpu`` = the rest, the part the
        thread was not running (other processes had the cores, the X server was waited for, another thread held
        the GIL). What the trader feels is the lag; what the terminal can fix is at most ``own``."""
        interval_ns = int(self.interval_s * 1e9)
        clock, record = time.perf_counter_ns, self.recorder.record
        cpu_clock, record_off, record_own = time.thread_time_ns, self.off_cpu.record, self.own.record
        while True:
            due = clock() + interval_ns
            cpu0 = cpu_clock()
            await asyncio.sleep(self.interval_s)
            lag = max(0, clock() - due)
            own = min(lag, cpu_clock() - cpu0)
            record(lag)
            record_own(own)
            record_off(lag - own)
            self.samples += 1
            self.last_ns = lag
            if lag > self.worst_ns:
                self.worst_ns = lag

    def start(self) -> asyncio.Task[None]:
        """Start on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="perf-loop-lag")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(frozen=True, slots=True)
class ProcessSample:
    t: float  # time.monotonic()
    rss_bytes: int
    cpu_percent: float  # of one core since the previous sample (may exceed 100 with threads)
    num_threads: int
    num_fds: int  # open file descriptors (sockets included); -1 where the platform has none


class ProcessProbe:
    """RSS and CPU % of this process, sampled on demand into a bounded history."""

    def __init__(self, history: int = 600) -> None:
        self.process = psutil.Process()
        self.history: deque[ProcessSample] = deque(maxlen=history)
        self.process.cpu_percent(None)  # the first call only sets the reference point

    def sample(self) -> ProcessSample:
        p = self.process
        with p.oneshot():
            rss = p.memory_info().rss
            cpu = p.cpu_percent(None)
            threads = p.num_threads()
            try:
                fds = p.num_fds()
            except (AttributeError, psutil.Error):
                fds = -1
        s = ProcessSample(time.monotonic(), rss, cpu, threads, fds)
        self.history.append(s)
        return s

    def rss_series_mb(self) -> list[float]:
        return [s.rss_bytes / 1e6 for s in self.history]

    def cpu_series(self) -> list[float]:
        return [s.cpu_percent for s in self.history]


def rss_bytes() -> int:
    """Resident set size of this process, in bytes."""
    return psutil.Process().memory_info().rss


def open_sockets() -> int:
    """Internet sockets this process holds (TCP and UDP). A few ms at most; call it at a reading pace."""
    try:
        return len(psutil.Process().net_connections(kind="inet"))
    except psutil.Error:
        return -1


def task_count(loop: asyncio.AbstractEventLoop | None = None) -> int:
    """Tasks not yet done on ``loop`` (the running one by default)."""
    return len(asyncio.all_tasks(loop))


def start_tracemalloc(frames: int = 1) -> None:
    """Start tracing Python allocations (no-op if already on). Costs memory and slows allocation while on."""
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)


def stop_tracemalloc() -> None:
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def tracemalloc_running() -> bool:
    return tracemalloc.is_tracing()


def top_allocations(n: int = 10) -> list[tuple[str, float, int]]:
    """The ``n`` source lines holding the most live Python memory: ``(file:line, size_kb, blocks)``, largest first.

    Empty if tracemalloc is not running. Frames of tracemalloc and importlib are left out.
    """
    if not tracemalloc.is_tracing():
        return []
    snap = tracemalloc.take_snapshot().filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<unknown>"),
    ))
    out = []
    for stat in snap.statistics("lineno")[:n]:
        frame = stat.traceback[0]
        out.append((f"{frame.filename}:{frame.lineno}", stat.size / 1024, stat.count))
    return out
