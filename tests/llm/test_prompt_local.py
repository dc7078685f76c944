"""What the embedded local model is asked with: its sampling, the schema its grammar enforces, its confidence floor."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from app.llm import local, prompt
from app.llm.providers import OpenAIProvider
from app.llm.schema import (
    HELD_PREFIX,
    LOCAL_CONFIDENCE_STEPS,
    LOCAL_RATIONALE_MAX,
    Action,
    CacheStatus,
    Decision,
    DecisionBody,
    DecisionMeta,
    hold_below_confidence,
    local_json_schema,
    local_response_format,
)
from tests.llm.test_providers import UPTREND, dev_server, state


def test_local_sampling_is_sent_as_openai_parameters_with_top_k_in_the_extra_body() -> None:
    kwargs = prompt.local_sampling_kwargs()
    assert kwargs["temperature"] == prompt.LOCAL_SAMPLING["temperature"] == 0.0
    assert kwargs["seed"] == prompt.LOCAL_SAMPLING["seed"]
    assert kwargs["max_tokens"] == prompt.LOCAL_SAMPLING["max_tokens"]
    assert kwargs["extra_body"] == {"top_k": prompt.LOCAL_SAMPLING["top_k"]}
    assert "top_k" not in kwargs
    assert kwargs["response_format"] == local_response_format()


def _admitted(prop: dict[str, Any]) -> list[Any]:
    """Boundary values a grammar built from one property of the local schema lets through."""
    if "enum" in prop:
        return list(prop["enum"])
    if prop["type"] == "null":
        return [None]
    if prop["type"] == "integer":
        return [prop["minimum"], prop["maximum"]]
    return ["", "x" * prop["maxLength"]]


def test_every_answer_the_local_schema_admits_is_a_valid_decision() -> None:
    # llama.cpp enforces enums, integer ranges and string lengths, nothing else: no number may be left to the model
    # but through those forms, or a tiny model answers 0.0 for a price and the answer is refused.
    schema = local_json_schema()
    props = schema["properties"]
    assert schema["required"] == list(props) and schema["additionalProperties"] is False
    for name, prop in props.items():
        assert "enum" in prop or prop["type"] in ("null", "integer", "string"), name
    assert set(props) == set(DecisionBody.model_fields)
    for values in itertools.product(*(_admitted(p) for p in props.values())):
        DecisionBody.model_validate(dict(zip(props, values, strict=True)))  # raises if any is out of range


def test_the_local_schema_offers_hold_first_and_bounds_the_rationale() -> None:
    props = local_json_schema()["properties"]
    assert props["action"]["enum"][0] == Action.HOLD  # a tiny model leans to the first option it is shown
    assert sorted(props["action"]["enum"]) == sorted(Action)
    assert props["rationale"]["maxLength"] == LOCAL_RATIONALE_MAX
    assert min(LOCAL_CONFIDENCE_STEPS) == 0.0 and max(LOCAL_CONFIDENCE_STEPS) == 1.0


@pytest.mark.asyncio
async def test_the_local_schema_is_what_the_provider_sends_with_the_local_options() -> None:
    srv = dev_server.start_server()
    try:
        async with OpenAIProvider(srv.url, srv.options.model, structured="json_schema", temperature=None,
                                  request_options=prompt.local_sampling_kwargs()) as provider:
            await provider.decide(state(**UPTREND))
    finally:
        srv.stop()
    sent = srv.stats.last_request
    assert sent["response_format"] == local_response_format()
    assert sent["top_k"] == prompt.LOCAL_SAMPLING["top_k"] and sent["seed"] == prompt.LOCAL_SAMPLING["seed"]


def _body(action: Action, confidence: float, rationale: str = "Uptrend.") -> DecisionBody:
    size = 0.0 if action in (Action.HOLD, Action.CLOSE) else 5.0
    return DecisionBody(action=action, size_pct=size, confidence=confidence, rationale=rationale)


@pytest.mark.parametrize("action", [Action.BUY, Action.SELL, Action.CLOSE])
def test_a_trade_below_the_confidence_floor_is_held_and_says_so(action: Action) -> None:
    held = hold_below_confidence(_body(action, 0.5), 0.8)
    assert held.action is Action.HOLD and held.size_pct == 0.0 and held.confidence == 0.5
    said = f"{HELD_PREFIX}: the model proposed {action.value} at confidence 0.50, below 0.80."
    assert held.rationale.startswith(said)
    assert held.rationale.endswith("Uptrend.")


def test_a_trade_at_the_floor_and_any_hold_pass_unchanged() -> None:
    buy = _body(Action.BUY, 0.8)
    hold = _body(Action.HOLD, 0.1)
    assert hold_below_confidence(buy, 0.8) is buy
    assert hold_below_confidence(hold, 0.8) is hold


@pytest.mark.parametrize("action", [Action.BUY, Action.SELL])
def test_a_confident_trade_of_size_zero_is_held_not_proposed(action: Action) -> None:
    """Seen on the default run: "BUY size 0% conf 0.80" with an Approve button, for an order of nothing."""
    empty = DecisionBody(action=action, size_pct=0, confidence=0.9, rationale="Uptrend.")
    held = hold_below_confidence(empty, 0.8)
    assert held.action is Action.HOLD
    assert held.rationale == f"{HELD_PREFIX}: the model proposed {action.value} with a size of 0 %. Uptrend."


def test_a_held_rationale_stays_within_the_schema_bound() -> None:
    held = hold_below_confidence(_body(Action.BUY, 0.3, "y" * 600), 0.8)
    DecisionBody.model_validate(held.model_dump())


def test_the_local_models_decisions_carry_the_floor_and_keep_their_meta() -> None:
    s = state(**UPTREND)
    meta = DecisionMeta(provider="local", model=local.MODEL_ALIAS, prompt_version=prompt.PROMPT_VERSION,
                        latency_ms=1234.0, cache_status=CacheStatus.MISS)
    low = Decision.about(s, _body(Action.BUY, prompt.LOCAL_MIN_CONFIDENCE - 0.1), meta)
    high = Decision.about(s, _body(Action.BUY, prompt.LOCAL_MIN_CONFIDENCE), meta)
    floored = local.floor_confidence(low)
    assert floored.body is not None and floored.body.action is Action.HOLD
    assert floored.body.rationale.startswith(HELD_PREFIX)
    assert floored.meta == meta and floored.state_ms == s.exchange_ms
    assert local.floor_confidence(high) is high
