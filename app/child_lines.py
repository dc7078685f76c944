"""Lines from a child process's pipe, for the parents of the built-in exchange and the local model."""

from __future__ import annotations

import asyncio
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
