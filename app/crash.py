"""Crash reports: an unhandled exception (main thread, any thread, or one the event loop caught and judged fatal)
is written to ``<log dir>/crashes/crash-YYYYmmdd-HHMMSS.txt`` without secrets, logged, and handed to a callback
(the GUI shows the path in a dialog).

A report holds the time, the terminal's version, Python and platform, the traceback and the last log lines. Every
secret registered with ``app.logs.register_secret`` and the value of every environment variable whose name
contains KEY, SECRET, TOKEN or PASSWORD are replaced by ``***``. No local variables are written.

An error that repeats (the same exception type raised from the same place, e.g. in a timer's slot) gets one
report; at most ``MAX_REPORTS`` are written per process, after that errors are only logged.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from app import logs

log = logging.getLogger(__name__)

MAX_REPORTS = 5
_SECRET_ENV_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD")

_report_dir: Path | None = None
_on_crash: Callable[[Path], None] | None = None
_seen: set[tuple[str, str, int]] = set()
_written = 0
_lock = threading.Lock()


def install_crash_handler(report_dir: Path | None = None, on_crash: Callable[[Path], None] | None = None) -> None:
    """Route uncaught exceptions of the main thread and of other threads to ``report_exception``. ``report_dir``
    defaults to ``crashes/`` in the log directory; ``on_crash(path)`` is called after each report is written."""
    global _report_dir, _on_crash
    _report_dir, _on_crash = report_dir, on_crash
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


def crash_dir() -> Path:
    return _report_dir if _report_dir is not None else logs.log_dir() / "crashes"


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    report_exception(exc, where="main thread", tb=tb)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "unknown"
    report_exception(args.exc_value, where=f"thread {name}", tb=args.exc_traceback)


def report_exception(exc: BaseException, where: str = "", tb: TracebackType | None = None) -> Path | None:
    """Log ``exc`` (scrubbed) and write a crash report unless this error was reported before or the per-process
    limit is reached; then call the ``on_crash`` callback. Returns the report's path, or None if none was written.
    Never raises: for the asyncio loop's exception handler too."""
    global _written
    tb = tb if tb is not None else exc.__traceback__
    signature = _signature(exc, tb)
    with _lock:
        report = signature not in _seen and _written < MAX_REPORTS
        if report:
            _seen.add(signature)
            _written += 1
    path = None
    if report:  # before the traceback is logged, so the report's last log lines do not repeat it
        try:
            path = write_report(exc, where=where, tb=tb)
        except Exception as write_exc:
            log.error("could not write a crash report: %s", write_exc)
    # logging never raises (a failing handler reports through handleError), and the scrubber masks secrets
    log.critical("unhandled error in %s", where or "the terminal", exc_info=(type(exc), exc, tb))
    if path is None:
        return None
    log.error("crash report written to %s", path)
    callback = _on_crash
    if callback is not None:
        try:
            callback(path)
        except Exception:
            log.exception("the crash callback failed")
    return path


def _signature(exc: BaseException, tb: TracebackType | None) -> tuple[str, str, int]:
    frames = traceback.extract_tb(tb) if tb is not None else []
    last = frames[-1] if frames else None
    return (type(exc).__qualname__, last.filename if last else "", (last.lineno or 0) if last else 0)


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of environment variables whose names suggest a secret (KEY, SECRET, TOKEN, PASSWORD)."""
    env = os.environ if environ is None else environ
    return [v for k, v in env.items()
            if any(w in k.upper() for w in _SECRET_ENV_WORDS) and len(v.strip()) >= logs.MIN_SECRET_LEN]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-trading-terminal")
    except Exception:
        return "unknown"


def render_report(exc: BaseException, where: str = "", tb: TracebackType | None = None) -> str:
    """The report's text, already scrubbed."""
    tb = tb if tb is not None else exc.__traceback__
    lines = [
        "AI Trading Terminal crash report",
        f"time: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        f"version: {_version()}",
        f"python: {sys.version.split()[0]} ({platform.python_implementation()}) {sys.executable}",
        f"platform: {platform.platform()}",
        f"frozen: {bool(getattr(sys, 'frozen', False))}",
        f"arguments: {' '.join(sys.argv[1:])}",
        f"where: {where or 'unknown'}",
        "",
        "Traceback",
        "---------",
        "".join(traceback.format_exception(type(exc), exc, tb)).rstrip(),
        "",
        f"Last log lines (at most {logs.RECENT_LINES})",
        "-----------------------------",
        *logs.recent_lines(),
        "",
    ]
    return logs.scrub_text("\n".join(lines), secret_env_values())


def write_report(exc: BaseException, where: str = "", tb: TracebackType | None = None) -> Path:
    """Write the report to a new file in ``crash_dir()`` and return its path (raises OSError if it cannot)."""
    text = render_report(exc, where=where, tb=tb)
    directory = crash_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 100):
        path = directory / (f"crash-{stamp}.txt" if n == 1 else f"crash-{stamp}-{n}.txt")
        try:
            with path.open("x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            continue
        return path
    raise OSError(f"too many crash reports in {directory} this second")


def reset_for_tests() -> None:
    """Tests only: forget which errors were reported."""
    global _written
    with _lock:
        _seen.clear()
        _written = 0
