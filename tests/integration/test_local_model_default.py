"""The default run as a new user starts it: no --llm-url, no settings file, so the embedded local model proposes.

Real processes all the way: the terminal, its built-in exchange and its local model server. Skipped, with the
reason, where the model's runtime or weights are not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import psutil
import pytest

from app.config import DECISION_SOURCE_ENV
from tests.conftest import wait_until
from tests.llm.test_local_model import _missing

ROOT = Path(__file__).resolve().parents[2]

# A first answer from a niced one-thread model can take minutes when the machine is busy with other work.
pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(360),
              pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


def _default_env(tmp_path: Path) -> dict[str, str]:
    """The user's environment: no choice of decision source (the suite sets one for every other test)."""
    env = {k: v for k, v in os.environ.items() if k != DECISION_SOURCE_ENV}
    return dict(env, QT_QPA_PLATFORM="offscreen", XDG_DATA_HOME=str(tmp_path / "data"),
                XDG_CONFIG_HOME=str(tmp_path / "config"))


async def _start(tmp_path: Path, *flags: str) -> asyncio.subprocess.Process:
    # A smoke test long enough for a busy machine; each test ends it early (SIGTERM: verdict and counters still
    # printed) once it has seen what it waits for.
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "--smoke-test", "300", "--json", *flags, cwd=ROOT, env=_default_env(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def _stderr_until(proc: asyncio.subprocess.Process, pattern: str, seen: list[str]) -> None:
    """Read the terminal's log (stderr) line by line until a line matches ``pattern``."""
    assert proc.stderr is not None
    while True:
        line = (await proc.stderr.readline()).decode(errors="replace")
        if not line:
            raise AssertionError(f"the terminal exited before logging {pattern!r}:\n{''.join(seen[-30:])}")
        seen.append(line)
        if re.search(pattern, line):
            return


async def _end(proc: asyncio.subprocess.Process, seen: list[str]) -> tuple[dict, str]:
    """SIGTERM (the smoke test's early end), then its counters and the whole log."""
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    log = "".join(seen) + err.decode(errors="replace")
    assert proc.returncode == 0, out.decode() + log[-3000:]
    return _counters(out), log


def _counters(stdout: bytes) -> dict:
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    assert lines, f"no JSON line in the output:\n{stdout.decode()}"
    return json.loads(lines[-1])


def _model_server(pid: int) -> psutil.Process | None:
    """The terminal's local model server, once it listens."""
    for child in psutil.Process(pid).children():
        try:
            if "app.llm.local" in child.cmdline() and any(c.status == psutil.CONN_LISTEN
                                                          for c in child.net_connections("tcp")):
                return child
        except psutil.Error:
            continue
    return None


async def test_the_default_run_shows_decisions_from_the_local_model(tmp_path) -> None:
    proc = await _start(tmp_path, "-v", "--symbols", "BTCUSDT")  # one question: the first answer comes sooner
    seen: list[str] = []
    try:
        # The decision service logs each answer at debug level: the first one from the model ends the run.
        await asyncio.wait_for(_stderr_until(proc, r"decision for \w+ in \d+ ms", seen), timeout=300)
        c, log = await _end(proc, seen)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert c["model"] == "LOCAL SmolLM2-135M" and c["model_fallback"] is None
    assert c["decisions"].get("MISS", 0) >= 1, c["decisions"]  # answered by the model, not the rules
    assert "OFFLINE" not in c["decisions"]
    assert c["task_faults"] == 0 and c["faults"] == {}
    assert "Traceback" not in log


async def test_a_killed_model_server_is_a_fallback_to_the_rules_not_a_fault(tmp_path) -> None:
    """SIGKILL the model's server mid-run, once it has answered: the terminal says so in one sentence, the offline
    rules take over (OFFLINE RULES in the status bar), the run is not failed and no task fault is counted."""
    proc = await _start(tmp_path, "-v", "--symbols", "BTCUSDT")
    seen: list[str] = []
    try:
        await asyncio.wait_for(_stderr_until(proc, r"decision for \w+ in \d+ ms", seen), timeout=300)
        server: list[psutil.Process] = []

        def listening() -> bool:
            if not server and (found := _model_server(proc.pid)) is not None:
                server.append(found)
            return bool(server)

        await wait_until(listening, timeout=10, what="the local model server")
        server[0].send_signal(signal.SIGKILL)
        await asyncio.wait_for(_stderr_until(proc, "local model is not available", seen), timeout=60)
        c, log = await _end(proc, seen)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert c["model"] == "OFFLINE RULES"
    assert "SIGKILL" in (c["model_fallback"] or "") and "offline rules" in c["model_fallback"]
    assert c["task_faults"] == 0 and c["faults"] == {}
    said = [line for line in log.splitlines() if "local model is not available" in line]
    assert len(said) == 1, log[-3000:]
    assert "Traceback" not in log
