"""The Decision schema: what a model (or the offline rules) may propose, validated at the trust boundary.

``DecisionBody`` is exactly what the model must answer (its JSON schema is sent as a structured output);
``Decision`` adds what we know about the answer (model, prompt version, latency, tokens, cache status).
Model text is data, never instructions: ``rationale`` is bounded plain text and the UI shows it inertly.

``strict_json_schema()`` is the form of ``DecisionBody``'s schema that OpenAI's strict structured outputs accept
(every property required, optional ones nullable through a type list, ``additionalProperties: false``, no
``$ref``/``default``/``title`` and no numeric or length bounds). The bounds are kept as words in the descriptions
so the model still sees them; the answer is always validated with pydantic afterwards, which enforces them.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

RATIONALE_MAX = 600
SCHEMA_NAME = "decision"  # the json_schema "name" sent with structured outputs


if TYPE_CHECKING:
    from app.market.features import MarketState


class Action(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"
    CLOSE = "CLOSE"


class CacheStatus(StrEnum):
    HIT = "HIT"  # the same prompt as a stored answer
    SIMILAR = "SIMILAR"  # every feature within tolerance of a stored answer
    MISS = "MISS"  # a fresh call to the model
    ERROR = "ERROR"  # the call failed; never becomes a proposal
    OFFLINE = "OFFLINE"  # the built-in rules, not a model


def plain_text(v: str) -> str:
    """Model text made inert for display: tabs and carriage returns become spaces; other control and format
    characters (ANSI escapes' ESC, NUL, DEL, C1 controls, bidi overrides, zero-width marks) are removed."""
    out = []
    for ch in v:
        if ch == "\n":
            out.append(ch)
        elif ch in "\t\r":
            out.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cf"):
            out.append(ch)
    return "".join(out).strip()


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    action: Action
    size_pct: float = Field(
        ge=0.0, le=100.0, description="Position size as % of equity; 0 for HOLD and CLOSE (CLOSE exits it all)"
    )
    # Bounded above so no model answer can overflow the price grid's exact arithmetic (no market trades near 1e12).
    limit_price: float | None = Field(default=None, gt=0.0, le=1e12,
                                      description="Limit price, or null for a market order")
    stop_loss_pct: float | None = Field(default=None, gt=0.0, le=50.0, description="Stop-loss, % from entry")
    take_profit_pct: float | None = Field(default=None, gt=0.0, le=100.0, description="Take-profit, % from entry")
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str = Field(max_length=RATIONALE_MAX, description="Plain text, one or two sentences")

    @field_validator("rationale")
    @classmethod
    def _plain_text(cls, v: str) -> str:
        # Control characters have no place in a short rationale and can hide text in a terminal or log.
        return plain_text(v)


class DecisionMeta(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: str  # "openai" (any compatible endpoint) or "offline"
    model: str
    prompt_version: str
    # How long this decision took to get: the model call's time for MISS / OFFLINE / ERROR, the cache lookup's
    # (or the wait for a similar call in flight) for HIT / SIMILAR, whose tokens and cost are then 0 (not spent).
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True  # False when the model has no entry in the price table (cost_usd is then 0)
    cache_status: CacheStatus = CacheStatus.MISS
    cache_age_s: float | None = None  # for HIT / SIMILAR: age of the stored answer
    cache_distance: float | None = None  # for SIMILAR: largest feature distance in units of its tolerance
    answer_latency_ms: float | None = None  # for HIT / SIMILAR: the latency of the model call that made the answer
    error: str | None = None  # for ERROR: what went wrong, fit for the trader (no secrets)


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    state_ms: int  # exchange time of the MarketState it was made from
    body: DecisionBody | None  # None only for ERROR
    meta: DecisionMeta

    @classmethod
    def about(cls, state: MarketState, body: DecisionBody | None, meta: DecisionMeta) -> Decision:
        """A decision made from ``state`` (its symbol, timeframe and exchange time)."""
        return cls(symbol=state.symbol, timeframe=state.timeframe, state_ms=state.exchange_ms, body=body, meta=meta)

    @property
    def is_error(self) -> bool:
        return self.meta.cache_status is CacheStatus.ERROR


# --- strict JSON schema for structured outputs -------------------------------------------------------------------

# Bounds that strict mode (and several local grammar engines) reject: moved into the description as words.
_BOUNDS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minLength", "maxLength")
_DROPPED = {"title", "default", "examples", "format", "pattern", "multipleOf", "minItems", "maxItems"}


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _bound_words(b: dict[str, Any]) -> str:
    if "minimum" in b and "maximum" in b:
        return f"from {_num(b['minimum'])} to {_num(b['maximum'])}"
    words = []
    if "minimum" in b:
        words.append(f"at least {_num(b['minimum'])}")
    if "exclusiveMinimum" in b:
        words.append(f"greater than {_num(b['exclusiveMinimum'])}")
    if "maximum" in b:
        words.append(f"at most {_num(b['maximum'])}")
    if "exclusiveMaximum" in b:
        words.append(f"less than {_num(b['exclusiveMaximum'])}")
    if "minLength" in b:
        words.append(f"at least {b['minLength']} characters")
    if "maxLength" in b:
        words.append(f"at most {b['maxLength']} characters")
    return ", ".join(words)


def _strict(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _strict(merged, defs)
    if "anyOf" in node:
        branches = node["anyOf"]
        non_null = [b for b in branches if b.get("type") != "null"]
        if len(non_null) == 1 and len(branches) == 2:
            # Optional[X] -> X with "null" added to its type list (strict mode's way of saying optional).
            inner = _strict({**non_null[0], **{k: v for k, v in node.items() if k != "anyOf"}}, defs)
            t = inner["type"]
            inner["type"] = [*t, "null"] if isinstance(t, list) else [t, "null"]
            return inner
        return {"anyOf": [_strict(b, defs) for b in branches]}

    out: dict[str, Any] = {}
    bounds: dict[str, Any] = {}
    for key, value in node.items():
        if key in _BOUNDS:
            bounds[key] = value
        elif key in _DROPPED or key == "$defs":
            continue
        elif key == "properties":
            out["properties"] = {name: _strict(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = _strict(value, defs)
        else:
            out[key] = value
    if bounds:
        desc = out.get("description", "")
        out["description"] = (desc + "; " if desc else "") + _bound_words(bounds)
    if out.get("type") == "object" or "properties" in out:
        out["type"] = "object"
        out["required"] = list(out.get("properties", {}))
        out["additionalProperties"] = False
    return out


def strict_json_schema(model: type[BaseModel] = DecisionBody) -> dict[str, Any]:
    """The model's JSON schema in the subset strict structured outputs accept (see the module docstring)."""
    full = model.model_json_schema()
    return _strict(full, full.get("$defs", {}))


def response_format_json_schema(model: type[BaseModel] = DecisionBody) -> dict[str, Any]:
    """The ``response_format`` value for a strict json_schema structured output."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": strict_json_schema(model)},
    }


# --- the embedded local model: a schema its grammar can enforce, and a confidence floor ----------------------------

# llama.cpp turns a json_schema into a grammar that enforces enums, integer ranges and string lengths, but not the
# bounds of a non-integer number: SmolLM2-135M then answers a limit price or a stop of 0.0 (refused by
# DecisionBody) and rationales of digits until the token limit. This form admits only valid DecisionBody answers:
# HOLD first among the actions (a tiny model leans to the first option it is shown), a whole-number size, no limit
# price, stop or target (it cannot size them; the trader sets them on the card), confidence in tenths, a short
# rationale. Every answer it admits passes DecisionBody.
LOCAL_RATIONALE_MAX = 100
LOCAL_CONFIDENCE_STEPS: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(11))


def local_json_schema() -> dict[str, Any]:
    """DecisionBody's fields, each in a form a llama.cpp grammar enforces (see above)."""
    props: dict[str, Any] = {
        "action": {"type": "string", "enum": [Action.HOLD, Action.BUY, Action.SELL, Action.CLOSE]},
        "size_pct": {"type": "integer", "minimum": 0, "maximum": 100, "description": "% of equity; 0 for HOLD"},
        "limit_price": {"type": "null"},
        "stop_loss_pct": {"type": "null"},
        "take_profit_pct": {"type": "null"},
        "confidence": {"type": "number", "enum": list(LOCAL_CONFIDENCE_STEPS)},
        "rationale": {"type": "string", "maxLength": LOCAL_RATIONALE_MAX},
    }
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def local_response_format() -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": local_json_schema()}}


HELD_PREFIX = "Held by the confidence floor"


def hold_below_confidence(body: DecisionBody, floor: float) -> DecisionBody:
    """HOLD in place of a BUY, SELL or CLOSE whose confidence is below ``floor``, or of a BUY or SELL of size 0; the
    rationale says so first (the card shows it) and keeps what the model proposed. HOLD, and trades at or above the
    floor, pass as they are.
    """
    no_size = body.action in (Action.BUY, Action.SELL) and body.size_pct <= 0
    if body.action is Action.HOLD or (body.confidence >= floor and not no_size):
        return body
    if no_size:  # a trade of 0 % of equity is no trade: holding says so instead of a proposal to buy nothing
        said = f"{HELD_PREFIX}: the model proposed {body.action.value} with a size of 0 %."
    else:
        said = (
            f"{HELD_PREFIX}: the model proposed {body.action.value} at confidence {body.confidence:.2f}, "
            f"below {floor:.2f}."
        )
    rationale = f"{said} {body.rationale}".strip()[:RATIONALE_MAX]
    return DecisionBody(action=Action.HOLD, size_pct=0.0, confidence=body.confidence, rationale=rationale)
