"""The built-in exchange as a process of its own: it serves, it explains why it cannot start, it stops with the
terminal, and it does not outlive a terminal that died without stopping it."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
import websockets

from app.market.sim.process import ExchangeProcess, ExchangeStartError, exchange_command


@pytest.mark.asyncio
async def test_serves_every_symbol_then_stops():
    exchange = ExchangeProcess(symbols=["BTCUSDT", "ETHUSDT"], trades_per_s=100.0)
    await exchange.start()
    pid = exchange.pid
    try:
        assert exchange.running and exchange.ws_url.startswith("ws://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            resp = await client.get(f"{exchange.rest_url}/api/v3/klines",
                                    params={"symbol": "ETHUSDT", "interval": "1m", "limit": 5})
        assert resp.status_code == 200 and len(resp.json()) == 5
        async with websockets.connect(f"{exchange.ws_url}/ws/ethusdt@trade") as ws:
            frame = await asyncio.wait_for(ws.recv(), timeout=10)
        assert '"s":"ETHUSDT"' in frame
    finally:
        await exchange.stop()
    assert not exchange.running and not psutil.pid_exists(pid)


@pytest.mark.asyncio
async def test_a_taken_port_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exchange = ExchangeProcess(symbols=["BTCUSDT"], trades_per_s=10.0, port=port)
        with pytest.raises(ExchangeStartError, match=str(port)):
            await exchange.start()
    assert not exchange.running


def test_exits_when_the_terminal_that_started_it_is_gone(tmp_path):
    # A stand-in "terminal" that starts the exchange and is then killed outright (no chance to stop it).
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         f"cmd = {exchange_command(['--symbols', 'BTCUSDT', '--rate', '10'])!r}\n"
         "import os\n"
         "child = subprocess.Popen(cmd + ['--parent-pid', str(os.getpid())], stdout=subprocess.PIPE)\n"
         "print(child.pid, flush=True)\n"
         "child.stdout.readline()\n"
         "print('ready', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        child_pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        assert psutil.pid_exists(child_pid)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.1)
        else:
            psutil.Process(child_pid).kill()
            raise AssertionError("the exchange outlived its terminal by 10 s")
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.asyncio
async def test_an_exchange_that_dies_mid_session_is_reported(caplog):
    exchange = ExchangeProcess(symbols=["BTCUSDT"], trades_per_s=10.0)
    await exchange.start()
    try:
        psutil.Process(exchange.pid).kill()
        deadline = time.monotonic() + 10
        while exchange.exit_code is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert exchange.exit_code is not None and exchange.exit_code != 0
        assert any("exited unexpectedly" in r.getMessage() for r in caplog.records)
    finally:
        await exchange.stop()
