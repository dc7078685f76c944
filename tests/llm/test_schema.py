"""The decision schema: what a model may answer, and the strict JSON schema sent as a structured output."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from app.llm.schema import (
    RATIONALE_MAX,
    SCHEMA_NAME,
    Action,
    CacheStatus,
    Decision,
    DecisionBody,
    DecisionMeta,
    response_format_json_schema,
    strict_json_schema,
)

VALID: dict[str, Any] = {
    "action": "BUY",
    "size_pct": 5.0,
    "limit_price": None,
    "stop_loss_pct": 0.4,
    "take_profit_pct": 0.8,
    "confidence": 0.7,
    "rationale": "Uptrend with momentum.",
}


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_strict_schema_requires_every_property_and_forbids_others() -> None:
    schema = strict_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == list(DecisionBody.model_fields)
    assert schema["required"] == list(DecisionBody.model_fields)


def test_strict_schema_optional_fields_are_nullable_type_lists() -> None:
    props = strict_json_schema()["properties"]
    for name in ("limit_price", "stop_loss_pct", "take_profit_pct"):
        assert props[name]["type"] == ["number", "null"], name
    for name in ("size_pct", "confidence"):
        assert props[name]["type"] == "number", name
    assert props["rationale"]["type"] == "string"
    assert props["action"] == {"enum": ["BUY", "SELL", "HOLD", "CLOSE"], "type": "string"}


def test_strict_schema_has_no_keywords_strict_mode_rejects() -> None:
    rejected = {"$ref", "$defs", "default", "title", "anyOf", "minimum", "maximum", "exclusiveMinimum", "maxLength"}
    for node in _walk(strict_json_schema()):
        assert not rejected & set(node), node


def test_strict_schema_keeps_the_bounds_as_words() -> None:
    props = strict_json_schema()["properties"]
    assert "from 0 to 100" in props["size_pct"]["description"]
    assert "from 0 to 1" in props["confidence"]["description"]
    assert "at most 50" in props["stop_loss_pct"]["description"]
    assert f"at most {RATIONALE_MAX} characters" in props["rationale"]["description"]


def test_response_format_is_a_strict_named_json_schema() -> None:
    fmt = response_format_json_schema()
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == SCHEMA_NAME == "decision"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == strict_json_schema()


def test_a_strict_mode_answer_with_nulls_validates() -> None:
    body = DecisionBody.model_validate({**VALID, "stop_loss_pct": None, "take_profit_pct": None})
    assert body.action is Action.BUY and body.stop_loss_pct is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size_pct", 500),
        ("size_pct", -1),
        ("action", "YOLO"),
        ("action", "buy 100 BTC"),
        ("confidence", 1.5),
        ("confidence", math.nan),
        ("stop_loss_pct", 0),
        ("stop_loss_pct", 80),
        ("limit_price", -5),
        ("rationale", "x" * (RATIONALE_MAX + 1)),
    ],
)
def test_out_of_schema_values_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        DecisionBody.model_validate({**VALID, field: value})


def test_unknown_and_missing_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        DecisionBody.model_validate({**VALID, "execute_now": True})
    missing = dict(VALID)
    del missing["confidence"]
    with pytest.raises(ValidationError):
        DecisionBody.model_validate(missing)


def test_control_characters_are_stripped_from_the_rationale() -> None:
    raw = "\x1b[31mRSI\x1b[0m oversold\x00,\tbuy\x07\x7f\x9b \u202eevil\u200b\r\nsecond line  "
    body = DecisionBody.model_validate({**VALID, "rationale": raw})
    assert body.rationale == "[31mRSI[0m oversold, buy evil \nsecond line"
    assert not any(ord(ch) < 32 and ch != "\n" for ch in body.rationale)


def test_the_body_is_frozen() -> None:
    body = DecisionBody.model_validate(VALID)
    with pytest.raises(ValidationError):
        body.size_pct = 100.0  # type: ignore[misc]


def test_a_limit_price_beyond_any_market_is_refused_at_the_boundary() -> None:
    # 1e30 would overflow the exact price-grid arithmetic downstream (a 28-digit Decimal quotient).
    with pytest.raises(ValidationError, match="limit_price"):
        DecisionBody(action=Action.BUY, size_pct=1, limit_price=1e30, confidence=0.9, rationale="t")


def test_a_decisions_own_latency_and_the_answers_latency_are_separate_fields() -> None:
    fresh = DecisionMeta(provider="openai", model="m", prompt_version="v2", latency_ms=4000.0)
    assert fresh.answer_latency_ms is None  # a model call: latency_ms is its own
    served = fresh.model_copy(update={"cache_status": CacheStatus.SIMILAR, "latency_ms": 0.014,
                                      "answer_latency_ms": 4000.0, "cache_age_s": 34.0})
    d = Decision(symbol="X", timeframe="1m", state_ms=1, body=None, meta=served)
    back = Decision.model_validate_json(d.model_dump_json())
    assert (back.meta.latency_ms, back.meta.answer_latency_ms, back.meta.cache_age_s) == (0.014, 4000.0, 34.0)
