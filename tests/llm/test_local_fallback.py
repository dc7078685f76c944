"""When the local model cannot run, the terminal says why in one sentence and the offline rules propose.

The server's process is real in each case; what it meets is arranged: a runtime that cannot be imported, a CPU
that traps an instruction (the process dies of SIGILL before it listens). No model runtime is needed here.
"""

from __future__ import annotations

import signal
import sys

import pytest

from app.config import Settings
from app.llm import local
from app.llm.local import LocalModelProvider, describe_exit
from app.llm.schema import CacheStatus
from app.session import Session
from tests.llm.test_providers import UPTREND, state

DIES_OF_SIGILL = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
# The real server entry point, in a process where the runtime cannot be imported.
NO_RUNTIME = [sys.executable, "-c", "import sys; sys.modules['xllamacpp'] = None; "
              "from app.llm.local import serve; sys.exit(serve(sys.argv[1:]))"]


def test_a_cpu_that_traps_an_instruction_is_said_plainly() -> None:
    assert "cannot run on this CPU" in describe_exit(-signal.SIGILL)
    assert "SIGKILL" in describe_exit(-signal.SIGKILL)


async def _failure_of(command: list[str], monkeypatch) -> tuple[LocalModelProvider, list[str]]:
    monkeypatch.setattr(local, "local_model_command", lambda args: [*command, *args])
    provider = LocalModelProvider()
    said: list[str] = []
    await provider.run(said.append)  # returns: a failure is handled, never raised
    return provider, said


@pytest.mark.asyncio
async def test_a_missing_runtime_falls_back_to_the_rules(monkeypatch) -> None:
    provider, said = await _failure_of(NO_RUNTIME, monkeypatch)
    assert provider.status == "failed"
    assert said == ["The local model is not available (the local model's runtime is not installed (pip install "
                    "xllamacpp)); the offline rules propose instead."]
    d = await provider.decide(state(**UPTREND))  # a request that was waiting gets the rules' answer
    assert d.meta.cache_status is CacheStatus.OFFLINE and d.body is not None
    await provider.aclose()


@pytest.mark.asyncio
async def test_sigill_at_start_switches_the_session_to_the_offline_rules(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(local, "local_model_command", lambda args: [*DIES_OF_SIGILL, *args])
    session = Session(Settings(decision_source="local", journal_path=tmp_path / "j.sqlite3"))
    try:
        assert session.provider.name == "local" and session.decisions.cache is not None  # badges on the default
        await session.provider.run(session._local_model_failed)
        assert session.decisions.provider.name == "offline" and session.provider is session.decisions.provider
        assert session.decisions.cache is None  # the rules' cards say OFFLINE, never HIT
        assert session.model_fallback is not None and "cannot run on this CPU" in session.model_fallback
        assert any("cannot run on this CPU" in text for _, _, text in session.desk.messages)  # told to the trader
        assert session.task_faults == 0  # handled, not a fault
    finally:
        await session.stop()


@pytest.mark.asyncio
async def test_rules_chosen_means_no_local_model(tmp_path) -> None:
    session = Session(Settings(decision_source="rules", journal_path=tmp_path / "j.sqlite3"))
    try:
        assert session.provider.name == "offline" and session.decisions.cache is None
    finally:
        await session.stop()


def test_the_packaged_executable_runs_the_server_as_its_local_model_subcommand(monkeypatch) -> None:
    """In the bundle the child is the executable itself; its command line reaches the server's entry point."""
    import subprocess

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    command = local.local_model_command(["--threads", "1"])
    assert command == [sys.executable, "local-model", "--threads", "1"]
    # What the frozen executable does with it: app.__main__ dispatches the subcommand (here through -m app).
    proc = subprocess.run([sys.executable, "-m", "app", *command[1:2], "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "trading-terminal local-model" in proc.stdout, proc.stderr


def test_model_local_or_rules_chooses_what_proposes_without_an_endpoint(tmp_path, monkeypatch, capsys) -> None:
    from app.__main__ import _settings_from, build_parser
    from app.config import DECISION_SOURCE_ENV

    def settings_for(*argv: str):
        return _settings_from(build_parser().parse_args(["--config", str(tmp_path / "none.toml"), *argv]))

    monkeypatch.delenv(DECISION_SOURCE_ENV, raising=False)
    settings, _ = settings_for()
    assert settings.decision_source == "local" and settings.llm_url is None  # a new user's default
    settings, _ = settings_for("--model", "rules")
    assert settings.decision_source == "rules" and settings.llm_model == "gpt-4o-mini"  # not a model name
    assert settings_for("--llm-url", "http://127.0.0.1:1/v1", "--model", "rules") is None
    assert "--model rules chooses what proposes without --llm-url" in capsys.readouterr().err
