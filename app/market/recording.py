"""Reading and writing recorded feeds, one frame per line.

Formats read (gzip or plain, detected by magic bytes):
- ``<receive_ns> <raw frame>``: what ``--record`` writes and the Binance capture in ../shared/data uses;
- ``<unix_seconds>: <raw frame>``: cryptofeed's captures (a first line holding the URL is skipped);
- JSON lines: one raw frame per line, no receive time (``None``).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO


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
        return int(head), rest
    if sep and head.endswith(b":"):
        try:
            return int(float(head[:-1]) * 1e9), rest
        except ValueError:
            pass
    return None  # a header line such as cryptofeed's connect URL


class Recorder:
    """Appends ``<receive_ns> <raw>`` lines; text frames are written as UTF-8."""

    def __init__(self, path: str | Path) -> None:
        self._fh = open(path, "ab", buffering=1 << 16)  # noqa: SIM115 - closed by close()

    def write(self, recv_ns: int, raw: bytes | str) -> None:
        data = raw.encode() if isinstance(raw, str) else raw
        self._fh.write(b"%d %s\n" % (recv_ns, data.replace(b"\n", b" ")))

    def close(self) -> None:
        self._fh.close()
