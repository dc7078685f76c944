"""Rotating log files with secrets scrubbed from every handler, and crash reports without secrets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from app import crash, logs

ROOT = Path(__file__).resolve().parents[1]
KEY = "tt-log-key-5e4d3c2b1a09"


@pytest.fixture
def root_logging():
    """Restore the root logger (handlers, level) and the scrubber registry after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            if h is not logs._recent:
                h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)
    logs.forget_secrets()


@pytest.fixture
def crash_hooks():
    hooks = sys.excepthook, threading.excepthook
    crash.reset_for_tests()
    yield
    sys.excepthook, threading.excepthook = hooks
    crash.reset_for_tests()


def _flush(root: logging.Logger) -> None:
    for h in root.handlers:
        h.flush()


def test_setup_logging_writes_a_rotating_file_and_scrubs_every_form_of_a_secret(tmp_path, root_logging):
    path = logs.setup_logging(verbose=True, log_dir=tmp_path / "logs")
    assert path == tmp_path / "logs" / "terminal.log"
    rotating = [h for h in root_logging.handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert len(rotating) == 1 and rotating[0].maxBytes == 2 * 1024 * 1024 and rotating[0].backupCount == 5
    assert all(any(isinstance(f, logs.SecretScrubber) for f in h.filters) for h in root_logging.handlers)
    for noisy in ("websockets", "httpx", "httpcore"):
        assert logging.getLogger(noisy).level == logging.WARNING

    logs.register_secret(KEY)
    log = logging.getLogger("app.test")
    log.debug("debug line is kept with -v")
    log.info("in the message " + KEY)
    log.warning("in the args %s and %r", KEY, {"auth": f"Bearer {KEY}"})
    try:
        raise RuntimeError(f"in the exception {KEY}")
    except RuntimeError:
        log.exception("failed")
    log.info("stack", stack_info=True)
    _flush(root_logging)
    text = path.read_text(encoding="utf-8")
    assert "debug line is kept" in text and "in the message ***" in text and "in the args *** and" in text
    assert "RuntimeError: in the exception ***" in text
    assert KEY not in text
    assert KEY not in "\n".join(logs.recent_lines())


def test_setup_logging_again_replaces_its_own_handlers_and_keeps_others(tmp_path, root_logging):
    other = logging.NullHandler()
    root_logging.addHandler(other)
    logs.setup_logging(verbose=False, log_dir=tmp_path / "a")
    n = len(root_logging.handlers)
    logs.setup_logging(verbose=False, log_dir=tmp_path / "b")
    assert len(root_logging.handlers) == n and other in root_logging.handlers
    assert root_logging.level == logging.INFO
    assert any(isinstance(f, logs.SecretScrubber) for f in other.filters)
    assert logs.log_dir() == tmp_path / "b"


def test_an_unwritable_log_dir_falls_back_to_the_temp_dir(tmp_path, root_logging, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setattr(logs.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    path = logs.setup_logging(verbose=False, log_dir=blocker / "logs")
    assert path == tmp_path / "tmp" / "ai-trading-terminal-logs" / "terminal.log"
    _flush(root_logging)
    assert "cannot write logs to" in path.read_text(encoding="utf-8")


def test_scrub_text_masks_longest_first_and_ignores_short_values():
    try:
        logs.register_secret("abcd1234")
        logs.register_secret("abcd1234-and-more")
        logs.register_secret("ab")  # too short to be a key: scrubbing it would blank ordinary words
        assert logs.scrub_text("x abcd1234-and-more y abcd1234 ab") == "x *** y *** ab"
    finally:
        logs.forget_secrets()


def test_crash_report_has_the_traceback_but_no_secret(tmp_path, root_logging, crash_hooks, monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tt-token-from-env-778899")
    logs.setup_logging(verbose=False, log_dir=tmp_path / "logs")
    logs.register_secret(KEY)
    logging.getLogger("app.test").info("a log line before the crash, with %s", KEY)
    seen: list[Path] = []
    crash.install_crash_handler(report_dir=tmp_path / "crashes", on_crash=seen.append)
    try:
        raise ValueError(f"bad thing with {KEY} and tt-token-from-env-778899")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert len(seen) == 1 and seen[0].parent == tmp_path / "crashes" and seen[0].name.startswith("crash-")
    text = seen[0].read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "ValueError: bad thing with *** and ***" in text
    assert "a log line before the crash, with ***" in text and "version:" in text and "python:" in text
    assert KEY not in text and "tt-token-from-env-778899" not in text
    _flush(root_logging)
    log_text = (tmp_path / "logs" / "terminal.log").read_text(encoding="utf-8")
    assert f"crash report written to {seen[0]}" in log_text and KEY not in log_text


def test_a_repeating_error_gets_one_report_and_threads_are_covered(tmp_path, root_logging, crash_hooks):
    logs.setup_logging(verbose=False, log_dir=tmp_path / "logs")
    seen: list[Path] = []
    crash.install_crash_handler(report_dir=tmp_path / "crashes", on_crash=seen.append)

    def fail_in_a_thread() -> None:
        raise OSError("socket gone")

    for _ in range(3):
        t = threading.Thread(target=fail_in_a_thread, name="worker")
        t.start()
        t.join()
    assert len(seen) == 1
    assert "where: thread worker" in seen[0].read_text(encoding="utf-8")
    try:
        raise KeyError("other")
    except KeyError as exc:
        assert crash.report_exception(exc, where="event loop") is not None
    assert len(seen) == 2 and len(list((tmp_path / "crashes").iterdir())) == 2


def test_forced_crash_in_a_process_writes_a_report_and_prints_its_path(tmp_path):
    code = textwrap.dedent(f"""
        import logging
        from app.__main__ import _setup_logging
        from app.logs import register_secret

        _setup_logging(False)
        register_secret({KEY!r})
        logging.getLogger("app").info("about to fail")
        raise RuntimeError("forced crash, key {KEY}")
    """)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert KEY not in proc.stderr and KEY not in proc.stdout
    reports = list((tmp_path / "state").rglob("crash-*.txt"))
    assert len(reports) == 1, proc.stderr
    assert reports[0].parent.name == "crashes" and reports[0].parent.parent.name == "log"
    assert f"report was written to {reports[0]}" in proc.stderr
    text = reports[0].read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "RuntimeError: forced crash, key ***" in text
    assert "about to fail" in text and KEY not in text


@pytest.mark.asyncio
async def test_a_session_task_that_dies_gets_a_crash_report(tmp_path, root_logging, crash_hooks):
    from app.config import Settings
    from app.session import Session

    seen: list[Path] = []
    crash.install_crash_handler(report_dir=tmp_path / "crashes", on_crash=seen.append)
    session = Session(Settings(journal_path=tmp_path / "j.sqlite3", history_bars=0))

    async def broken() -> None:
        raise RuntimeError("the market task hit a bug")

    task = session.spawn(broken(), "market")
    with contextlib.suppress(RuntimeError):
        await task
    await asyncio.sleep(0)  # done callbacks run on the next turn
    assert len(seen) == 1
    text = seen[0].read_text(encoding="utf-8")
    assert "task market" in text and "RuntimeError: the market task hit a bug" in text
    session.journal.close()
