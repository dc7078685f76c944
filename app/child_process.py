"""What the parents of the built-in exchange and the local model share: reading a child's pipe, stopping it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


async def pipe_lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    """Each line of ``stream`` decoded (undecodable bytes replaced) and right-stripped, until end of file. A line over
    the stream's limit is skipped, never fatal: the pipe must keep being drained or the child blocks writing to it."""
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over the stream's limit
            continue
        if not raw:
            return
        yield raw.decode(errors="replace").rstrip()


async def stop_child(proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``timeout_s``; returns once it has exited."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
