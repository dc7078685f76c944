"""The fault suite's parts: the exchange's own count of trades sent, and scripts/chaos.py end to end (small)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from app.market.sim.cli import READY_PREFIX, STATS_PREFIX

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.asyncio
async def test_the_exchange_reports_at_exit_exactly_the_trades_a_client_received():
    proc = subprocess.Popen([sys.executable, "-m", "app.market.sim", "--symbols", "BTCUSDT,ETHUSDT",
                             "--rate", "100"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(READY_PREFIX), line
        ws_url = line.split()[1]
        received = {"BTCUSDT": 0, "ETHUSDT": 0}
        async with websockets.connect(f"{ws_url}/stream?streams=btcusdt@trade/ethusdt@trade") as ws:
            async for raw in ws:
                received[json.loads(raw)["data"]["s"]] += 1
                if received["BTCUSDT"] == 30:
                    proc.send_signal(signal.SIGTERM)  # a clean stop: every frame written still arrives
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    stats = [json.loads(x.removeprefix(STATS_PREFIX)) for x in out.splitlines() if x.startswith(STATS_PREFIX)]
    assert len(stats) == 1, out
    assert stats[0]["trades_sent"] == received


def test_chaos_script_restarts_kills_and_finds_nothing_lost():
    proc = subprocess.run([sys.executable, "scripts/chaos.py", "--restarts", "2", "--kills", "1", "--up-s", "1",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["restarts"] == 2 and result["recoveries"] == 2 and result["kills"] == 1, result
    assert result["trades_sent"] > 0 and result["trades_delivered"] == result["trades_sent"], result
    assert result["trades_lost"] == 0 and result["duplicates_delivered"] == 0 and result["task_faults"] == 0
    assert result["integrity_ok"] is True and result["state_restored"] is True, result
    assert proc.returncode == 0, proc.stderr
