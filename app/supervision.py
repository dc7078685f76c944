"""Task supervision: no part of the terminal may die silently and leave it running half-dead.

Every long-lived session task (feed, market, decisions, desk, ...) runs under a ``Supervisor``. A task that raises is
a *fault*: counted, given a crash report, and restarted with exponential backoff when restarting it is safe. A task
that may not be restarted, or that keeps failing, is *stopped*: the status bar names it in a red FAULT and the smoke
test fails. The supervisor knows nothing of Qt; the window reads ``faults`` on its timer.

Test hook: the environment variable ``TRADING_TERMINAL_INJECT_FAULT=<task name>`` makes the first run of that task
raise ``InjectedFault`` (once), so a test can check the whole path on the real terminal in a subprocess. It is
ignored in the shipped executable (``sys.frozen``): a stray variable must never break a trader's terminal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

INJECT_FAULT_ENV = "TRADING_TERMINAL_INJECT_FAULT"

TaskFactory = Callable[[], Coroutine[Any, Any, Any]]

# How long a part that failed and runs again is still shown (amber) in the status bar.
RECOVERED_NOTE_S = 60.0


class InjectedFault(RuntimeError):
    """Raised by the test hook (see the module docstring); never in normal use."""


@dataclass(slots=True)
class TaskFault:
    """What the trader and the smoke test see of one part that failed."""

    name: str
    faults: int = 0
    restarts: int = 0
    stopped: bool = False  # True: the part is down for good (not restartable, or it kept failing)
    last_error: str = ""
    down: bool = False  # failed and not running (yet): waiting out its backoff, or stopped
    recovered_at: float | None = None  # supervisor clock: when it ran again after its last failure

    @property
    def text(self) -> str:
        if self.stopped:
            return f"{self.name} stopped"
        return f"{self.name} restarted {self.restarts}×" if self.restarts else f"{self.name} failed"

    @property
    def detail(self) -> str:
        state = "stopped" if self.stopped else "down, restarting" if self.down else "running again"
        return (f"{self.name}: {state}; {self.faults} failure(s), {self.restarts} restart(s); "
                f"last: {self.last_error}")


@dataclass(frozen=True, slots=True)
class FaultStatus:
    """The status bar's one short word on failed parts: red while one is down, amber for a while after it recovered.
    The tooltip has the details."""

    text: str
    level: str  # "bad" (a part is down or stopped) or "warn" (recovered recently)
    tooltip: str


def fault_status(faults: Iterable[TaskFault], now: float, note_s: float = RECOVERED_NOTE_S) -> FaultStatus | None:
    """What the status bar shows of ``faults`` at ``now`` (supervisor clock); None when nothing is worth showing."""
    faults = list(faults)
    down = [f for f in faults if f.stopped or f.down]
    recent = [f for f in faults if not (f.stopped or f.down) and f.recovered_at is not None
              and now - f.recovered_at < note_s]
    if not down and not recent:
        return None
    if down:
        text, level = f"FAULT {down[0].name}{_more(down)}", "bad"
    else:
        f = recent[0]
        what = f"restarted ×{f.restarts}" if f.restarts else "recovered"
        text, level = f"{f.name} {what}{_more(recent)}", "warn"
    tooltip = "\n".join(f.detail for f in faults) + "\nCrash reports are in the log folder."
    return FaultStatus(text, level, tooltip)


@dataclass(slots=True)
class _Supervised:
    name: str
    factory: TaskFactory
    restart_factory: TaskFactory | None
    restart: bool
    streak: int = 0  # consecutive restarts; reset once a run has stayed up for ``healthy_s``
    started: float = 0.0


class Supervisor:
    def __init__(self, *, backoff_s: float = 0.5, max_backoff_s: float = 30.0, max_restarts: int = 8,
                 healthy_s: float = 60.0, inject: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_restarts = max_restarts
        self.healthy_s = healthy_s
        self.faults: dict[str, TaskFault] = {}
        self.fault_count = 0  # every task failure since start, restarted or not
        self.version = 0  # bumps on every fault, restart or stop (the window redraws its label then)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending: dict[str, asyncio.TimerHandle] = {}  # restarts waiting out their backoff, by task name
        self._inject = inject if inject is not None else _injected_from_env()
        self._closing = False
        self.clock = clock  # when faults happen and parts recover (the status bar's amber note)

    # ----- starting tasks -----------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task that runs once; if it raises, that is a fault and the part is stopped."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, None))
        return task

    def supervise(self, name: str, factory: TaskFactory, *, restart: bool = True,
                  restart_factory: TaskFactory | None = None) -> asyncio.Task[Any]:
        """Run ``factory()`` as task ``name``; if it raises and ``restart``, run ``restart_factory()`` (or the
        factory again) after a backoff. ``restart_factory`` is for a task whose start-up must happen only once."""
        entry = _Supervised(name, factory, restart_factory, restart)
        return self._start(entry, factory)

    def _start(self, entry: _Supervised, factory: TaskFactory) -> asyncio.Task[Any]:
        coro = factory()
        if self._inject == entry.name:
            self._inject = None
            coro.close()  # never started: closing it avoids a "never awaited" warning
            coro = _raise(InjectedFault(f"fault injected into task {entry.name} ({INJECT_FAULT_ENV})"))
        entry.started = time.monotonic()
        task = asyncio.get_running_loop().create_task(coro, name=entry.name)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, entry))
        return task

    # ----- when a task ends ---------------------------------------------------------------------------------
    def _done(self, task: asyncio.Task[Any], entry: _Supervised | None) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        if exc is None:
            if entry is not None:  # a long-lived task must not end: that too leaves a part of the terminal dead
                self.record_fault(task.get_name(), RuntimeError("the task ended on its own"), stopped=True)
            return
        name = task.get_name()
        if entry is None or not entry.restart:
            self.record_fault(name, exc, stopped=True)
            return
        if time.monotonic() - entry.started >= self.healthy_s:
            entry.streak = 0
        if entry.streak >= self.max_restarts:
            self.record_fault(name, exc, stopped=True)
            log.error("task %s failed %d times in a row; not restarted again", name, entry.streak + 1)
            return
        fault = self.record_fault(name, exc, stopped=False, restarting=True)
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** entry.streak)
        entry.streak += 1
        log.warning("task %s failed (%s); restarting in %g s", name, fault.last_error, delay)
        self._pending[name] = asyncio.get_running_loop().call_later(delay, self._restart, entry)

    def _restart(self, entry: _Supervised) -> None:
        self._pending.pop(entry.name, None)
        if self._closing:
            return
        fault = self.faults[entry.name]
        fault.restarts += 1
        fault.down, fault.recovered_at = False, self.clock()
        self.version += 1
        self._start(entry, entry.restart_factory or entry.factory)

    def record_fault(self, name: str, exc: BaseException, *, stopped: bool, restarting: bool = False) -> TaskFault:
        """Count a failure of part ``name`` and write its crash report (also for tasks the supervisor did not
        start, e.g. one decision request whose listener raised: that part carries on at once, so it counts as
        recovered). ``restarting``: the part is down until its restart."""
        from app.crash import report_exception

        fault = self.faults.setdefault(name, TaskFault(name))
        fault.faults += 1
        fault.stopped = fault.stopped or stopped
        fault.down = fault.stopped or restarting
        fault.recovered_at = None if fault.down else self.clock()
        fault.last_error = f"{type(exc).__name__}: {exc}"
        self.fault_count += 1
        self.version += 1
        report_exception(exc, where=f"task {name}")
        return fault

    # ----- reading and stopping -----------------------------------------------------------------------------
    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        return set(self._tasks)

    def status(self) -> FaultStatus | None:
        """The status bar's word on failed parts now (``fault_status``)."""
        return fault_status(self.faults.values(), self.clock())

    def counts(self) -> dict[str, int]:
        """Failures per part, for counters and the smoke test's JSON."""
        return {name: f.faults for name, f in self.faults.items()}

    async def stop(self, timeout_s: float) -> list[asyncio.Task[Any]]:
        """Cancel every task and pending restart; returns the tasks that did not stop within ``timeout_s``."""
        self._closing = True
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if not tasks:
            return []
        _, stuck = await asyncio.wait(tasks, timeout=timeout_s)
        return list(stuck)


def _injected_from_env() -> str | None:
    """The test hook's task name; never in a frozen (shipped) executable."""
    if getattr(sys, "frozen", False):
        return None
    return os.environ.get(INJECT_FAULT_ENV) or None


def _more(shown: list[TaskFault]) -> str:
    """' +2' when three parts are shown by one name: the label stays short beside the prices."""
    return f" +{len(shown) - 1}" if len(shown) > 1 else ""


async def _raise(exc: BaseException) -> None:
    raise exc
