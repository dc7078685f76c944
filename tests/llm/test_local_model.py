"""The embedded local model against its REAL server (xllamacpp + the SmolLM2 weights), no stand-in.

One server per module for the answer tests (one thread, as the terminal runs it); the fallback test starts and kills
its own. Skipped, with the reason, where the runtime or the weights are not installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from app.llm import prompt
from app.llm.cache import DecisionCache
from app.llm.local import (
    API_KEY_ENV,
    MODEL_ALIAS,
    READY_PREFIX,
    LocalModelProvider,
    LocalModelUnavailable,
    find_weights,
    local_client,
    local_model_command,
)
from app.llm.providers import ProviderError
from app.llm.schema import CacheStatus, Decision, DecisionBody
from app.market.features import MarketState
from tests.llm.test_providers import DOWNTREND, UPTREND, state


def _missing() -> str | None:
    if importlib.util.find_spec("xllamacpp") is None:
        return "the local model's runtime (xllamacpp) is not installed"
    try:
        find_weights()
    except LocalModelUnavailable as exc:
        return str(exc)
    return None


pytestmark = [pytest.mark.asyncio, pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str]]:
    """(base URL, API key) of one real local server, started exactly as the terminal starts it."""
    key = "test-key-" + os.urandom(8).hex()
    proc = subprocess.Popen(local_model_command(["--threads", "1", "--parent-pid", str(os.getpid())]),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, **{API_KEY_ENV: key}))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()  # blocks until it listens or exits (then the line is empty)
        assert line.startswith(READY_PREFIX), f"the local model did not start (exit {proc.poll()})"
        yield line[len(READY_PREFIX):] + "/v1", key
    finally:
        proc.kill()
        proc.wait()


async def _answer(client, s: MarketState) -> Decision | ProviderError:
    try:
        return await client.decide(s)
    except ProviderError as exc:
        return exc


async def test_answers_follow_the_decision_schema(server) -> None:
    """The server enforces the local model's JSON schema as a grammar (prompt.LOCAL_SAMPLING carries it): every
    answer is a valid decision, none malformed or refused by the schema."""
    url, key = server
    client = local_client(url, key)
    try:
        answers = [await _answer(client, state(**kind)) for kind in ({}, UPTREND, DOWNTREND)]
    finally:
        await client.aclose()
    failures = [a for a in answers if isinstance(a, ProviderError)]
    assert not failures
    for d in answers:
        assert isinstance(d, Decision)
        assert isinstance(d.body, DecisionBody)
        assert (d.meta.provider, d.meta.model, d.meta.cache_status) == ("local", MODEL_ALIAS, CacheStatus.MISS)
        assert d.meta.completion_tokens > 0 and d.meta.prompt_version == prompt.PROMPT_VERSION


async def test_a_repeated_state_is_a_hit_and_a_near_one_similar(server) -> None:
    """The badge flow the default run shows: MISS (the model answered), HIT (the same state again), SIMILAR (a
    state within the cache's tolerances), the last two without asking the model."""
    url, key = server
    client = local_client(url, key)
    cache = DecisionCache(audit_rate=0.0)
    calls = 0

    async def ask(s: MarketState) -> Decision:
        async def compute() -> Decision:
            nonlocal calls
            calls += 1
            return await client.decide(s)

        return await cache.get_or_compute(s, model=client.model, prompt_version=client.prompt_version,
                                          prompt_digest=prompt.digest(prompt.render(s)), compute=compute)

    try:
        first = None
        for kind in ({}, UPTREND, DOWNTREND):  # the first state whose answer passes the schema
            try:
                first = await ask(base := state(**kind))
                break
            except ProviderError as exc:
                assert exc.reason == "schema", exc
        assert first is not None, "no answer passed the schema"
        asked = calls
        again = await ask(base)
        near = await ask(dataclasses.replace(base, rsi=base.rsi + 0.5))
    finally:
        await cache.aclose()
        await client.aclose()
    assert first.meta.cache_status is CacheStatus.MISS
    assert again.meta.cache_status is CacheStatus.HIT and again.body == first.body
    assert near.meta.cache_status is CacheStatus.SIMILAR and near.body == first.body
    assert calls == asked  # the model was not asked again: both came from the cache


async def test_a_killed_server_falls_back_to_the_offline_rules_in_one_sentence() -> None:
    """SIGKILL the server mid-session: the provider says why once, answers from then on with the offline rules
    (OFFLINE badge), and raises nothing (a handled fallback, not a fault)."""
    provider = LocalModelProvider(threads=1)
    said: list[str] = []
    run = asyncio.create_task(provider.run(said.append))
    try:
        async with asyncio.timeout(60):
            while provider.status == "loading":
                await asyncio.sleep(0.05)
        assert provider.status == "ready", said
        pid = provider.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            await run  # returns: the death is handled, not raised
        assert provider.status == "failed"
        assert len(said) == 1 and "SIGKILL" in said[0] and "offline rules" in said[0]
        d = await provider.decide(state(**UPTREND))
        assert d.meta.cache_status is CacheStatus.OFFLINE and d.body is not None
    finally:
        run.cancel()
        await provider.aclose()
