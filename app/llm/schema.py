"""The Decision schema: what a model (or the offline rules) may propose, validated at the trust boundary.

``DecisionBody`` is exactly what the model must answer (its JSON schema is sent as a structured output);
``Decision`` adds what we know about the answer (model, prompt version, latency, tokens, cache status).
Model text is data, never instructions: ``rationale`` is bounded plain text and the UI shows it inertly.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

RATIONALE_MAX = 600


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


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    size_pct: float = Field(ge=0.0, le=100.0, description="Position size as % of equity; 0 for HOLD")
    limit_price: float | None = Field(default=None, gt=0.0, description="Limit price, or null for a market order")
    stop_loss_pct: float | None = Field(default=None, gt=0.0, le=50.0, description="Stop-loss, % from entry")
    take_profit_pct: float | None = Field(default=None, gt=0.0, le=100.0, description="Take-profit, % from entry")
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str = Field(max_length=RATIONALE_MAX, description="Plain text, one or two sentences")

    @field_validator("rationale")
    @classmethod
    def _plain_text(cls, v: str) -> str:
        # Control characters have no place in a one-line rationale and can hide text in a terminal or log.
        return "".join(ch for ch in v if ch == "\n" or ch >= " ").strip()


class DecisionMeta(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: str  # "openai" (any compatible endpoint) or "offline"
    model: str
    prompt_version: str
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_status: CacheStatus = CacheStatus.MISS
    cache_age_s: float | None = None  # for HIT / SIMILAR: age of the stored answer
    cache_distance: float | None = None  # for SIMILAR: largest feature distance in units of its tolerance
    error: str | None = None  # for ERROR: what went wrong, fit for the trader (no secrets)


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    symbol: str
    timeframe: str
    state_ms: int  # exchange time of the MarketState it was made from
    body: DecisionBody | None  # None only for ERROR
    meta: DecisionMeta

    @property
    def is_error(self) -> bool:
        return self.meta.cache_status is CacheStatus.ERROR
