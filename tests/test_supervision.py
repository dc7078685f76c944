"""Supervisor: what the status bar says of failed parts over time, and the fault-injection test hook's reach."""

from __future__ import annotations

import asyncio
import sys

import pytest

from app.supervision import INJECT_FAULT_ENV, RECOVERED_NOTE_S, Supervisor, TaskFault, fault_status
from tests.conftest import wait_until


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.asyncio
async def test_a_restarted_part_is_red_while_down_then_amber_for_a_while_then_gone():
    clock = Clock()
    sup = Supervisor(backoff_s=0.01, inject="", clock=clock)
    runs = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("lost the connection")
        await asyncio.Event().wait()

    sup.supervise("feed", flaky)
    try:
        await wait_until(lambda: len(runs) == 2, what="the restart")
        status = sup.status()
        assert (status.text, status.level) == ("feed restarted ×1", "warn")
        assert "feed: running again; 1 failure(s), 1 restart(s); last: RuntimeError: lost the connection" \
            in status.tooltip
        clock.t += RECOVERED_NOTE_S + 1
        assert sup.status() is None  # healthy for a minute: the note is gone
    finally:
        await sup.stop(1.0)


def test_a_part_waiting_for_its_restart_or_stopped_is_red_and_a_stopped_one_stays_red():
    clock = Clock()
    sup = Supervisor(inject="", clock=clock)
    sup.record_fault("desk", RuntimeError("x"), stopped=False, restarting=True)
    assert (sup.status().text, sup.status().level) == ("FAULT desk", "bad")
    sup.record_fault("market", RuntimeError("y"), stopped=True)
    clock.t += 3600
    assert (sup.status().text, sup.status().level) == ("FAULT desk +1", "bad")  # short: details in the tooltip


def test_a_one_off_failure_of_a_part_that_carries_on_is_an_amber_note_not_a_red_fault_forever():
    clock = Clock()
    sup = Supervisor(inject="", clock=clock)
    sup.record_fault("decision BTCUSDT", ValueError("the desk could not take this decision"), stopped=False)
    assert (sup.status().text, sup.status().level) == ("decision BTCUSDT recovered", "warn")
    clock.t += RECOVERED_NOTE_S
    assert sup.status() is None
    assert sup.fault_count == 1  # still counted: the smoke test fails on it


def test_no_faults_show_nothing():
    assert fault_status([], 0.0) is None
    assert fault_status([TaskFault("feed", faults=1, recovered_at=0.0)], RECOVERED_NOTE_S) is None


@pytest.mark.asyncio
async def test_the_fault_injection_hook_is_ignored_in_the_shipped_executable(monkeypatch):
    monkeypatch.setenv(INJECT_FAULT_ENV, "feed")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    sup = Supervisor()
    ran = asyncio.Event()

    async def feed() -> None:
        ran.set()
        await asyncio.Event().wait()

    sup.supervise("feed", feed)
    try:
        await asyncio.wait_for(ran.wait(), 5)
        assert sup.fault_count == 0
    finally:
        await sup.stop(1.0)
    monkeypatch.delattr(sys, "frozen")
    assert Supervisor()._inject == "feed"  # a test run (not frozen) still has the hook
