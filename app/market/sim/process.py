"""The built-in exchange in a process of its own, as a real exchange is.

In the terminal's process the exchange's work (making five busy markets, encoding and sending thousands of frames a
second) ran on the same event loop as the window, and was the largest single cause of loop lag at 5k msgs/s. In
its own process it runs on the other core and the terminal sees only a socket, exactly as with Binance.

The child is ``python -m app.market.sim`` (or, in the packaged executable, ``trading-terminal exchange``);
it prints ``ready <ws_url> <rest_url>`` once listening (``... <trading_url>`` with trading on), and exits by itself
if the terminal dies without stopping it. With ``trading_keys`` it serves Binance spot's order API as well, for that
key pair, which travels in the child's environment (never its command line, which other users can read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from app.child_process import pipe_lines, stop_child
from app.market.sim.cli import READY_PREFIX
from app.market.sim.order_api_setup import KEY_ENV, SECRET_ENV

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0  # a cold start imports numpy and websockets: seconds on a slow disk
STOP_TIMEOUT_S = 3.0


class ExchangeStartError(RuntimeError):
    """The built-in exchange did not start; ``str()`` is its own explanation (port taken, unreadable replay)."""


def exchange_command(args: list[str]) -> list[str]:
    """How to run the built-in exchange: this interpreter on the module, or the packaged executable itself."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "exchange", *args]
    return [sys.executable, "-m", "app.market.sim", *args]


class ExchangeProcess:
    """Start with ``await start()``; ``ws_url`` and ``rest_url`` are then the exchange's; ``await stop()``."""

    def __init__(self, *, symbols: list[str], trades_per_s: float, protocol: str = "binance", port: int = 0,
                 replay: Path | None = None, replay_speed: float = 1.0,
                 trading_keys: tuple[str, str] | None = None, balances: str | None = None) -> None:
        args = ["--port", str(port), "--protocol", protocol, "--parent-pid", str(os.getpid())]
        if trading_keys is not None:
            args.append("--trading")
            if balances:
                args += ["--balances", balances]  # "USDT=100000,BTC=1"
        if replay is not None:
            args += ["--replay", str(replay), "--speed", repr(replay_speed)]
        else:
            args += ["--symbols", ",".join(symbols), "--rate", repr(trades_per_s)]
        self.command = exchange_command(args)
        self.ws_url = ""
        self.rest_url = ""
        self.trading_url = ""  # "http://127.0.0.1:PORT" with trading_keys: ccxt's api URLs are it + "/api/v3"
        self._trading_keys = trading_keys
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.exit_code: int | None = None  # set if the exchange exited without being stopped

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def ws_api_url(self) -> str:
        """The trading API's user data stream (Binance's WebSocket API); "" without trading."""
        return self.trading_url.replace("http://", "ws://", 1) + "/ws-api/v3" if self.trading_url else ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop(KEY_ENV, None)
        env.pop(SECRET_ENV, None)
        if self._trading_keys is not None:
            env[KEY_ENV], env[SECRET_ENV] = self._trading_keys
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env,
            )
        except OSError as exc:
            raise ExchangeStartError(f"cannot run the built-in exchange: {exc}") from exc
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                line = (await self._proc.stdout.readline()).decode(errors="replace").strip()
                if line.startswith(READY_PREFIX):
                    self.ws_url, self.rest_url, *trading = line[len(READY_PREFIX):].split()
                    if len(trading) > 1 or (self._trading_keys is not None) != bool(trading):
                        raise ValueError(line)
                    self.trading_url = trading[0] if trading else ""
                    self._watch = asyncio.create_task(self._watch_exit(), name="exchange-exit")
                    self._stderr_task = asyncio.create_task(self._relay_stderr(), name="exchange-stderr")
                    log.info("built-in exchange running as process %d on %s", self._proc.pid, self.ws_url)
                    return
                await self._proc.wait()
                err = (await self._proc.stderr.read()).decode(errors="replace").strip() if self._proc.stderr else ""
        except TimeoutError:
            await self.stop()
            raise ExchangeStartError(f"the built-in exchange did not start within {START_TIMEOUT_S:g} s") from None
        except ValueError:  # a "ready" line that is not "ready <ws> <rest> [<trading>]" as asked
            await self.stop()
            raise ExchangeStartError(f"the built-in exchange said {line!r}, not where it listens") from None
        reason = err.splitlines()[-1].removeprefix("error: ") if err else f"exit code {self._proc.returncode}"
        self._proc = None
        raise ExchangeStartError(reason)

    async def _watch_exit(self) -> None:
        """An exchange that dies mid-session (killed, crashed) is said in the log at once, with its exit code: the
        feed would otherwise retry a dead port with no reason given."""
        proc = self._proc
        assert proc is not None
        code = await proc.wait()
        if self._proc is proc:  # not stopped by us
            self.exit_code = code
            log.error("the built-in exchange (process %d) exited unexpectedly with code %d; restart the terminal "
                      "to get it back", proc.pid, code)

    async def _relay_stderr(self) -> None:
        """The child's warnings into the terminal's log; the pipe is drained so the child never blocks on it."""
        assert self._proc is not None and self._proc.stderr is not None
        async for text in pipe_lines(self._proc.stderr):
            if text and not text.startswith("exchange simulator ("):
                log.warning("built-in exchange: %s", text)

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        await stop_child(proc, STOP_TIMEOUT_S)
        if self._stderr_task is not None:  # the child's last lines (a shutdown traceback) still reach the log
            await asyncio.wait({self._stderr_task}, timeout=0.5)
        for task in (self._watch, self._stderr_task):
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watch = self._stderr_task = None
