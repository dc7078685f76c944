"""``--ws-url`` / ``--rest-url`` point a live exchange's feed at another endpoint, here a built-in exchange run on its
own as a test server; and a file ``--replay`` cannot use is refused in one sentence. Real processes, offscreen."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from app.market.sim.cli import READY_PREFIX
from tests.integration.test_cli import ROOT, last_json_line, run_terminal


@pytest.fixture
def exchange_server(request) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A built-in exchange in its own process speaking ``request.param``: (ws_url, rest_url)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.market.sim", "--port", "0", "--symbols", "BTCUSDT,ETHUSDT", "--rate", "40",
         "--protocol", request.param],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith(READY_PREFIX), line
        ws_url, rest_url = line[len(READY_PREFIX):].split()
        yield ws_url, rest_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("exchange_server", ["binance", "binance-futures"], indirect=True)
def test_the_terminal_takes_a_binance_feed_from_the_given_urls(exchange_server, request, tmp_path):
    ws_url, rest_url = exchange_server
    exchange = request.node.callspec.params["exchange_server"]
    proc = run_terminal("--exchange", exchange, "--symbols", "BTCUSDT,ETHUSDT", "--ws-url", ws_url,
                        "--rest-url", rest_url, "--smoke-test", "5", "--json", "--journal", str(tmp_path / "j.sqlite3"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counters = last_json_line(proc.stdout)
    assert counters["trades"]["BTCUSDT"] > 0 and counters["trades"]["ETHUSDT"] > 0
    assert counters["rejected"] == {} and counters["task_faults"] == 0


@pytest.mark.parametrize("args,message", [
    (["--ws-url", "ws://127.0.0.1:1"], "the built-in exchange has its own"),
    (["--exchange", "binance", "--ws-url", "http://127.0.0.1:1"], "error: --ws-url: "),
    (["--exchange", "binance", "--rest-url", "ftp://x"], "error: --rest-url: "),
])
def test_endpoint_flags_that_cannot_work_are_refused(args, message):
    proc = run_terminal(*args, "--smoke-test", "1")
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_file_of_no_known_feed_is_refused_naming_it(tmp_path):
    tape = tmp_path / "legacy.jsonl"
    tape.write_text('{"type":"match","product_id":"BTC-USD","price":"1"}\n' * 3)
    proc = run_terminal("--replay", str(tape), "--smoke-test", "2")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tape) in lines[0] and "none of its 3 frames" in lines[0], proc.stderr
