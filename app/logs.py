"""Logging: the console as before, rotating files in the platformdirs log directory, and a scrubber that keeps
every known secret out of every handler's output.

``setup_logging`` is called once by the command line; tests may call it again (it replaces only the handlers it
installed itself). Secrets reach the scrubber through ``register_secret`` (``app.secrets.Secrets`` registers every
value it reads or stores); the scrubber replaces them with ``***`` in the message, its arguments, the exception
text and the stack text before any handler formats the record.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

import platformdirs

APP_NAME = "ai-trading-terminal"
LOG_FILE = "terminal.log"
MAX_BYTES = 2 * 1024 * 1024
BACKUPS = 5
RECENT_LINES = 200
MIN_SECRET_LEN = 4  # shorter values are not keys, and scrubbing them would blank ordinary words
MASK = "***"

CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s]: %(message)s"
# Libraries whose INFO lines are per request or per frame: WARNING and above only. openai's client speaks through
# httpx2 / httpcore2 (its "HTTP Request: POST .../chat/completions" line per decision filled the log dock), other
# code through httpx / httpcore.
NOISY = ("websockets", "httpx", "httpcore", "httpx2", "httpcore2", "openai")

log = logging.getLogger(__name__)

_secrets: set[str] = set()
_secrets_sorted: tuple[str, ...] = ()  # longest first, rebuilt on change: the scrubber reads it per record
_secrets_lock = threading.Lock()
_log_dir: Path | None = None


# --- the secret registry -----------------------------------------------------------------------------------------


def register_secret(value: str | None) -> None:
    """From now on ``value`` is replaced by ``***`` wherever the scrubber or ``scrub_text`` sees it."""
    global _secrets_sorted
    if value and len(value.strip()) >= MIN_SECRET_LEN:
        with _secrets_lock:
            before = len(_secrets)
            _secrets.update({value, value.strip()})
            if len(_secrets) != before:
                _secrets_sorted = tuple(sorted(_secrets, key=len, reverse=True))


def registered_secrets() -> tuple[str, ...]:
    """Longest first, so a secret that contains another is masked whole."""
    return _secrets_sorted


def forget_secrets() -> None:
    """Tests only: empty the registry."""
    global _secrets_sorted
    with _secrets_lock:
        _secrets.clear()
        _secrets_sorted = ()


def scrub_text(text: str, extra: tuple[str, ...] | list[str] = ()) -> str:
    """``text`` with every registered secret (and each of ``extra``) replaced by ``***``."""
    for secret in (*registered_secrets(), *sorted((e for e in extra if e), key=len, reverse=True)):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class SecretScrubber(logging.Filter):
    """A handler filter: rewrites the record in place so that no registered secret survives formatting.

    The record is shared by every handler, so the first scrubber that sees it cleans it for all; doing it again
    is cheap (nothing left to replace)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = registered_secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it, but never with a secret in it
            message = f"{record.msg!s} {record.args!r}"
        if any(s in message for s in secrets):
            record.msg, record.args = scrub_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and any(s in record.exc_text for s in secrets):
            record.exc_text = scrub_text(record.exc_text)
        if record.stack_info and any(s in record.stack_info for s in secrets):
            record.stack_info = scrub_text(record.stack_info)
        return True


class RecentLines(logging.Handler):
    """The last few formatted lines, for crash reports (a crash report should not need to read the log file)."""

    def __init__(self, maxlen: int = RECENT_LINES) -> None:
        super().__init__(level=logging.NOTSET)
        self.lines: deque[str] = deque(maxlen=maxlen)
        self.setFormatter(logging.Formatter(FILE_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)


_recent = RecentLines()


def recent_lines() -> list[str]:
    """The last ``RECENT_LINES`` log lines, already scrubbed (empty if ``setup_logging`` was not called)."""
    return list(_recent.lines)


# --- configuration -----------------------------------------------------------------------------------------------


def default_log_dir() -> Path:
    return platformdirs.user_log_path(APP_NAME)


def log_dir() -> Path:
    """Where the log files are (and crash reports, in ``crashes/``): the directory ``setup_logging`` used."""
    return _log_dir if _log_dir is not None else default_log_dir()


def setup_logging(verbose: bool, log_dir: Path | None = None) -> Path:
    """Console (stderr) and a rotating file (2 MB x 5) at DEBUG with ``verbose``, else INFO; every root handler
    (including any added before this call, such as the log dock's) gets the ``SecretScrubber``. Returns the log
    file's path. A log directory that cannot be created falls back to the temp directory, with a warning."""
    global _log_dir
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tt_owned", False):
            root.removeHandler(handler)
            if handler is not _recent:
                handler.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)

    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT, "%H:%M:%S"))
    handlers: list[logging.Handler] = [console, _recent]

    problem = None
    path = None
    for directory in (log_dir or default_log_dir(), Path(tempfile.gettempdir()) / f"{APP_NAME}-logs"):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            file_handler = logging.handlers.RotatingFileHandler(
                directory / LOG_FILE, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
            )
        except OSError as exc:
            problem = problem or f"cannot write logs to {directory}: {exc}"
            continue
        file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
        handlers.append(file_handler)
        path, _log_dir = directory / LOG_FILE, directory
        break

    for handler in handlers:
        handler._tt_owned = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    scrubber_for_all_handlers()
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if problem:
        log.warning("%s%s", problem, f"; logging to {path} instead" if path else "; logging to the console only")
    if path is None:  # nowhere to write: report the path we would have used
        _log_dir = log_dir or default_log_dir()
        path = _log_dir / LOG_FILE
    log.debug("log file %s", path)
    return path


def scrubber_for_all_handlers() -> None:
    """Give every root handler a ``SecretScrubber`` (once). Call again after adding a handler to the root."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretScrubber) for f in handler.filters):
            handler.addFilter(SecretScrubber())
