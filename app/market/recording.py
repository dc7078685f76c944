"""Reading and writing recorded feeds, one frame per line.

Formats read (gzip or plain, detected by magic bytes):
- ``<receive_ns> <raw frame>``: what ``--record`` writes and the Binance capture in ../shared/data uses; a frame
  that would not survive a text line (not UTF-8, holding a line break, or starting with the marker) is written
  as ``<receive_ns> base64:<base64 of the frame>`` and read back byte for byte;
- ``<unix_seconds>: <raw frame>``: cryptofeed's captures (a first line holding the URL is skipped);
- JSON lines: one raw frame per line, no receive time (``None``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

B64_MARK = b"base64:"


class RecordingError(OSError):
    """The file is missing, unreadable or not a recording; the message is fit for the user."""


def open_recording(path: str | Path) -> IO[bytes]:
    p = Path(path)
    try:
        fh: IO[bytes] = open(p, "rb")  # noqa: SIM115 - returned to the caller
    except OSError as exc:
        raise RecordingError(f"cannot read recording {p}: {exc.strerror or exc}") from None
    if p.is_dir():
        fh.close()
        raise RecordingError(f"cannot read recording {p}: it is a directory")
    if fh.read(2) == b"\x1f\x8b":
        fh.seek(0)
        return gzip.GzipFile(fileobj=fh)  # type: ignore[return-value]
    fh.seek(0)
    return fh


def iter_frames(path: str | Path) -> Iterator[tuple[int | None, bytes]]:
    """Yield ``(receive_ns or None, raw)`` for every frame. Raises RecordingError if unreadable."""
    fh = open_recording(path)
    try:
        for line in fh:
            frame = _split(line.rstrip(b"\r\n"))
            if frame is not None:
                yield frame
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise RecordingError(f"cannot read recording {path}: {exc}") from None
    finally:
        fh.close()


def _split(line: bytes) -> tuple[int | None, bytes] | None:
    if not line.strip():
        return None
    if line[:1] in (b"{", b"["):
        return None, line
    head, sep, rest = line.partition(b" ")
    if sep and head.isdigit():
        if rest.startswith(B64_MARK):
            try:
                return int(head), base64.b64decode(rest[len(B64_MARK) :], validate=True)
            except binascii.Error:
                return None
        return int(head), rest
    if sep and head.endswith(b":"):
        try:
            return int(float(head[:-1]) * 1e9), rest
        except ValueError:
            pass
    return None  # a header line such as cryptofeed's connect URL


class Recorder:
    """Appends ``<receive_ns> <raw>`` lines, exactly what ``iter_frames`` reads back.

    Text frames are written as UTF-8; a frame a text line cannot hold as is (binary that is not UTF-8, a line
    break inside, or one starting with the base64 marker) is written base64-encoded so it replays byte for byte.
    Writes are buffered and flushed at least every ``flush_every_s`` and on ``close``. A write error (disk full,
    file removed) is logged once, kept in ``error`` and stops the recording; it never reaches the feed.
    """

    def __init__(self, path: str | Path, flush_every_s: float = 1.0) -> None:
        self.path = Path(path)
        try:
            self._fh: IO[bytes] | None = open(self.path, "ab", buffering=1 << 16)  # noqa: SIM115 - close()
        except OSError as exc:
            raise RecordingError(f"cannot record to {self.path}: {exc.strerror or exc}") from None
        self.frames = 0
        self.bytes = 0
        self.error = ""
        self._flush_every_ns = int(flush_every_s * 1e9)
        self._flushed_ns = time.perf_counter_ns()

    @property
    def recording(self) -> bool:
        return self._fh is not None

    def write(self, recv_ns: int, raw: bytes | bytearray | memoryview | str) -> None:
        fh = self._fh
        if fh is None:
            return
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        if b"\n" in data or b"\r" in data or data.startswith(B64_MARK) or not _is_text(raw, data):
            data = B64_MARK + base64.b64encode(data)
        line = b"%d %s\n" % (recv_ns, data)
        try:
            fh.write(line)
            now = time.perf_counter_ns()
            if now - self._flushed_ns >= self._flush_every_ns:
                self._flushed_ns = now
                fh.flush()
        except (OSError, ValueError) as exc:
            self._fail(exc)
            return
        self.frames += 1
        self.bytes += len(line)

    def write_depth_snapshot(self, recv_ns: int, symbol: str, answer: dict) -> None:
        """A REST depth snapshot the terminal fetched, kept inline as recorders do, with its symbol (the REST
        answer names none), so a replay can answer depth requests and its books sync."""
        import orjson

        self.write(recv_ns, orjson.dumps({**answer, "s": symbol}))

    def flush(self) -> None:
        if self._fh is not None:
            try:
                self._fh.flush()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.close()  # flushes
        except OSError as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            log.error("recording to %s failed on close: %s", self.path, self.error)

    def _fail(self, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        log.error("recording to %s stopped after %d frames: %s", self.path, self.frames, self.error)
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError, ValueError):
                fh.close()


def _is_text(raw: bytes | bytearray | memoryview | str, data: bytes) -> bool:
    if isinstance(raw, str):
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# ----- what a recording holds ------------------------------------------------------------------------------

# Frames the built-in exchange can replay, told apart by a key only their feed has (cheap: no JSON parsing).
_DIALECT_MARKS = (
    (b'"stream"', "binance"),  # combined-stream envelope
    (b'"lastUpdateId"', "binance"),  # REST depth snapshot kept inline
    (b'"events"', "coinbase"),  # Advanced Trade: {"channel": ..., "events": [...]}
    (b'"channel"', "kraken"),  # WebSocket v2: {"channel": ..., "type": ..., "data": [...]}
)
_SYMBOL_FIELDS = re.compile(rb'"(?:s|product_id|symbol)"\s*:\s*"([A-Za-z0-9/-]{2,30})"')


@dataclass
class RecordingSummary:
    frames: int = 0
    replayable: int = 0  # frames of a feed the built-in exchange replays
    dialects: set[str] = field(default_factory=set)
    symbols: set[str] = field(default_factory=set)  # as the terminal writes them: BTCUSDT, BTCUSD


def scan_recording(path: str | Path, max_frames: int | None = None) -> RecordingSummary:
    """What the recording holds (the first ``max_frames`` frames, or all), or RecordingError with one sentence a
    user can act on: unreadable, empty, not a recording, or frames of no feed the built-in exchange replays."""
    summary = RecordingSummary()
    first: bytes | None = None
    for _, raw in iter_frames(path):
        summary.frames += 1
        first = first if first is not None else raw
        dialect = _dialect(raw)
        if dialect is not None:
            summary.replayable += 1
            summary.dialects.add(dialect)
            summary.symbols.update(m.decode().replace("-", "").replace("/", "").upper()
                                   for m in _SYMBOL_FIELDS.findall(raw))
        if max_frames is not None and summary.frames >= max_frames:
            break
    if summary.frames == 0:
        if _blank(path):
            raise RecordingError(f"cannot replay {path}: the file is empty")
        raise RecordingError(f"cannot replay {path}: it is not a recording (no line is '<receive_ns> <frame>', "
                             f"'<unix_time>: <frame>' or a JSON object)")
    if summary.replayable == 0:
        sample = (first or b"")[:60].decode("utf-8", "replace")
        raise RecordingError(f"cannot replay {path}: none of its {summary.frames} frames comes from a Binance, "
                             f"Coinbase Advanced Trade or Kraken v2 feed (the first is {sample!r})")
    return summary


def _dialect(raw: bytes) -> str | None:
    if not raw.lstrip().startswith(b"{"):
        return None
    for mark, dialect in _DIALECT_MARKS:
        if mark in raw:
            return dialect
    return None


def _blank(path: str | Path) -> bool:
    fh = open_recording(path)
    try:
        return not any(line.strip() for line in fh)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    finally:
        fh.close()
