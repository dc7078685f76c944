"""Decision providers: something that turns a MarketState into a Decision.

- ``OpenAIProvider`` speaks the OpenAI chat-completions API through ``openai.AsyncOpenAI``, so it works with
  OpenAI itself and every compatible server: Ollama (``http://localhost:11434/v1``), vLLM (``http://host:8000/v1``),
  LM Studio (``http://localhost:1234/v1``), llama.cpp's ``llama-server`` (``http://localhost:8080/v1``) and the
  project's own ``scripts/llm_dev_server.py``. Azure OpenAI works two ways: its v1 API with the plain client
  (``base_url="https://RESOURCE.openai.azure.com/openai/v1/"``, the deployment name as ``model``), or the
  classic deployment API by passing ``api_version="2024-10-21"`` (then ``base_url`` is the resource endpoint,
  ``https://RESOURCE.openai.azure.com``, and ``model`` the deployment name; ``AsyncAzureOpenAI`` is used).
- ``OfflineProvider`` applies ``offline_rules``: deterministic rules over the same features, no network.

Every failure is a ``ProviderError`` with a ``reason`` the service can count and a message fit for the trader.
The API key is never stored on the provider, and every message that could echo it is scrubbed.

Structured output (``structured="auto"``): ask for a strict ``json_schema``; if the endpoint rejects that with a
400/422 that mentions ``response_format``/``json_schema``, fall back to ``json_object``, and if that is rejected
too, to plain text with the JSON object extracted from the answer. The mode that worked is remembered for the
provider instance (``structured_mode``). Whatever the mode, the answer is validated with ``DecisionBody``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, Protocol, get_args, runtime_checkable
from urllib.parse import urlsplit

import orjson
from pydantic import ValidationError

from app.llm import prompt
from app.llm.schema import (
    Action,
    CacheStatus,
    Decision,
    DecisionBody,
    DecisionMeta,
    plain_text,
    response_format_json_schema,
)
from app.market.features import MarketState, PositionState

log = logging.getLogger(__name__)

Reason = Literal[
    "timeout",  # no answer within the client timeout
    "rate_limited",  # HTTP 429, after the client's own retries (honouring Retry-After)
    "server_error",  # HTTP 5xx, after retries
    "connection",  # could not connect, connection reset
    "auth",  # HTTP 401 / 403
    "not_found",  # HTTP 404: wrong URL or unknown model
    "bad_request",  # other HTTP 4xx
    "malformed",  # the answer is not a JSON object (or not a chat completion at all)
    "schema",  # JSON, but not a valid DecisionBody
    "refused",  # the model refused to answer
    "circuit_open",  # raised by the service when its breaker is open, never by a provider
]
REASONS: frozenset[str] = frozenset(get_args(Reason))

StructuredMode = Literal["json_schema", "json_object", "text"]
_MODES: tuple[StructuredMode, ...] = ("json_schema", "json_object", "text")


# --- errors and secrets ------------------------------------------------------------------------------------------

_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{4,}|Bearer\s+\S+)", re.IGNORECASE)


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with each secret (and anything that looks like an API key or bearer token) replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEYLIKE.sub("***", text)


class ProviderError(Exception):
    """A provider could not produce a valid decision. ``reason`` is one of ``REASONS``; ``str()`` is the message
    for the trader. It never carries the API key or the underlying client exception (no ``__cause__``)."""

    def __init__(
        self, reason: Reason, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown ProviderError reason {reason!r}")
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ProviderError(reason={self.reason!r}, message={self.message!r})"


# --- the provider protocol ---------------------------------------------------------------------------------------


@runtime_checkable
class DecisionProvider(Protocol):
    name: str  # "openai" or "offline"
    model: str
    prompt_version: str

    async def decide(self, state: MarketState) -> Decision:
        """A decision about ``state`` (cache status MISS, or OFFLINE for the rules). Raises ProviderError on any
        failure; never returns an ERROR decision (that is the service's job)."""
        ...

    async def aclose(self) -> None: ...


# --- prices ------------------------------------------------------------------------------------------------------


class ModelPrice(NamedTuple):
    input_per_mtok: float  # USD per 1M prompt tokens
    output_per_mtok: float  # USD per 1M completion tokens


# Public list prices in USD per 1M tokens (standard tier, no cached-input discount) at the time of writing.
# Edit or pass your own table; a model matches its exact name or the longest key it starts with
# ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini"). A model not in the table costs 0 and the decision says so
# (``DecisionMeta.cost_known`` is False).
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(2.50, 10.00),
    "gpt-4o-mini": ModelPrice(0.15, 0.60),
    "gpt-4.1": ModelPrice(2.00, 8.00),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40),
    "o4-mini": ModelPrice(1.10, 4.40),
}


def price_for(model: str, table: Mapping[str, ModelPrice | tuple[float, float]]) -> ModelPrice | None:
    if model in table:
        return ModelPrice(*table[model])
    prefixes = [key for key in table if model.startswith(key)]
    return ModelPrice(*table[max(prefixes, key=len)]) if prefixes else None


def cost_usd(price: ModelPrice | None, prompt_tokens: int, completion_tokens: int) -> float:
    if price is None:
        return 0.0
    return (prompt_tokens * price.input_per_mtok + completion_tokens * price.output_per_mtok) / 1_000_000


# --- JSON out of model text --------------------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def _balanced_objects(text: str):
    """Each balanced {...} substring, in order of its opening brace (strings and escapes respected)."""
    start = text.find("{")
    while start != -1:
        depth = 0
        in_str = False
        esc = False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    yield text[start : i + 1]
                    break
        start = text.find("{", start + 1)


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model's answer: the whole text, else a ``` fenced block, else the first
    balanced {...} that parses. None when there is none."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    for candidate in candidates:
        if candidate.startswith("{"):
            try:
                obj = orjson.loads(candidate)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    for candidate in _balanced_objects(text):
        try:
            obj = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _validation_summary(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "answer"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


# --- OpenAI-compatible endpoints ---------------------------------------------------------------------------------


def _endpoint_label(base_url: str) -> str:
    """Scheme, host, port and path of the endpoint, without credentials or query (safe to show and log)."""
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value) / divisor
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    return None


def _server_message(exc: Any) -> str:
    """What the server said about an HTTP error: its error message if it sent one, else the client's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body:
        return body
    return str(getattr(exc, "message", "") or "")


def _server_text(exc: Any) -> str:
    """The server's message, param, code and type together, for matching."""
    body = getattr(exc, "body", None)
    parts = [_server_message(exc)]
    if isinstance(body, dict):
        parts += [str(body[key]) for key in ("param", "code", "type") if body.get(key)]
    return " ".join(parts)


def _format_rejected(exc: Any) -> bool:
    if getattr(exc, "status_code", None) not in (400, 422):
        return False
    text = _server_text(exc).lower()
    return getattr(exc, "param", None) == "response_format" or any(
        word in text for word in ("response_format", "json_schema", "json_object", "response format")
    )


class OpenAIProvider:
    """Decisions from any OpenAI-compatible chat-completions endpoint (see the module docstring)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 20.0,
        max_retries: int = 2,
        price_table: Mapping[str, ModelPrice | tuple[float, float]] | None = None,
        structured: Literal["auto", "json_schema", "json_object", "text"] = "auto",
        *,
        api_version: str | None = None,
        temperature: float | None = 0.0,
        request_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``api_key=None`` sends a placeholder (local servers need none); the environment is not read, the
        settings layer resolves secrets. ``timeout_s`` is per attempt; the client makes ``1 + max_retries``
        attempts on timeouts, connection errors, 429 (waiting for Retry-After) and 5xx.
        ``structured`` fixes one output mode instead of "auto" (which falls back as described above).
        ``temperature=None`` leaves it unset; if an endpoint rejects it (some reasoning models do), it is dropped.
        ``request_options`` go into every request as they are (sampling for one known server, e.g. the local model's
        ``prompt.local_sampling_kwargs()``).
        """
        import openai  # lazily: ~0.5 s of import that the offline path never needs

        if structured not in ("auto", *_MODES):
            raise ValueError(f"structured must be 'auto', 'json_schema', 'json_object' or 'text', not {structured!r}")
        self._openai = openai
        self.model = model
        self.prompt_version = prompt.PROMPT_VERSION
        self.endpoint = _endpoint_label(base_url)  # without credentials or query: safe to show and log
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self._auto = structured == "auto"
        self._mode: StructuredMode = "json_schema" if self._auto else structured
        self._temperature = temperature
        self._request_options = dict(request_options or {})
        self._prices = DEFAULT_PRICES if price_table is None else price_table
        self._price = price_for(model, self._prices)
        if self._price is None:
            log.info("no price for model %r in the price table: its cost is reported as 0 (unknown)", model)
        self._response_format_json_schema = response_format_json_schema()
        key = api_key or "no-key"
        self._scrub_secrets: tuple[str, ...] = (api_key,) if api_key else ()
        if api_version:
            self._client: Any = openai.AsyncAzureOpenAI(
                azure_endpoint=base_url,
                api_version=api_version,
                api_key=key,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
        else:
            self._client = openai.AsyncOpenAI(
                base_url=base_url, api_key=key, timeout=self.timeout_s, max_retries=self.max_retries
            )

    @property
    def structured_mode(self) -> StructuredMode:
        """The output mode the next request will use (the one that last worked, in "auto")."""
        return self._mode

    @property
    def price(self) -> ModelPrice | None:
        return self._price

    def __repr__(self) -> str:
        return f"OpenAIProvider(endpoint={self.endpoint!r}, model={self.model!r}, mode={self._mode!r})"

    async def __aenter__(self) -> OpenAIProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    # -- the call --

    def _request(self, messages: list[dict[str, str]], mode: StructuredMode) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, **self._request_options}
        if self._temperature is not None:
            kwargs["temperature"] = self._temperature
        if mode == "json_schema":  # a schema in request_options (one made for a known server) is kept
            kwargs.setdefault("response_format", self._response_format_json_schema)
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    async def decide(self, state: MarketState) -> Decision:
        messages = prompt.render(state)
        t0 = time.perf_counter()
        completion = await self._complete(messages)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        body = self._parse(completion)
        usage = getattr(completion, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        return Decision.about(
            state,
            body,
            DecisionMeta(
                provider=self.name,
                model=self.model,
                prompt_version=self.prompt_version,
                latency_ms=latency_ms,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost_usd=cost_usd(self._price, prompt_tokens, completion_tokens),
                cost_known=self._price is not None,
                cache_status=CacheStatus.MISS,
            ),
        )

    async def _complete(self, messages: list[dict[str, str]]) -> Any:
        openai = self._openai
        error: ProviderError | None = None
        for _ in range(len(_MODES) + 2):  # each mode once, plus one retry without temperature
            mode = self._mode
            try:
                return await self._client.chat.completions.create(**self._request(messages, mode))
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                text = _server_text(exc).lower()
                if self._temperature is not None and "temperature" in text:
                    log.info("%s rejected the temperature parameter; sending none from now on", self.endpoint)
                    self._temperature = None
                    continue
                if self._auto and mode != "text" and _format_rejected(exc):
                    self._mode = _MODES[_MODES.index(mode) + 1]
                    log.info("%s rejected response_format %s; falling back to %s", self.endpoint, mode, self._mode)
                    continue
                error = self._error(exc)
            except openai.OpenAIError as exc:
                error = self._error(exc)
            break
        # Raised outside the except blocks so the client's exception is not even the implicit __context__.
        if error is None:
            error = ProviderError("bad_request", f"{self.endpoint} rejected every request format")
        log.debug("decision request failed (%s): %s", error.reason, error.message)  # the service logs and counts
        raise error

    def _error(self, exc: Exception) -> ProviderError:
        """Map an openai exception to a ProviderError with a scrubbed, trader-readable message."""
        openai = self._openai
        where = self.endpoint
        status = getattr(exc, "status_code", None)
        said = plain_text(scrub(_server_message(exc), *self._scrub_secrets))[:200].rstrip(".")
        tries = f" after {self.max_retries + 1} attempts" if self.max_retries else ""
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError("timeout", f"{where} did not answer within {self.timeout_s:g} s{tries}")
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError("connection", f"cannot connect to {where}{tries}")
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderError("malformed", f"{where} sent a response that is not a chat completion")
        if isinstance(exc, openai.RateLimitError):
            retry = _retry_after(exc.response.headers)
            hint = f"; retry after {retry:g} s" if retry is not None else ""
            return ProviderError(
                "rate_limited",
                f"{where} is rate limiting requests (HTTP 429){tries}{hint}",
                status=429,
                retry_after_s=retry,
            )
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return ProviderError(
                "auth", f"{where} refused the credentials (HTTP {status}): {said}. Check the API key.", status=status
            )
        if isinstance(exc, openai.NotFoundError):
            return ProviderError(
                "not_found",
                f"{where} has no such model or path (HTTP 404) for model {self.model!r}: {said}",
                status=404,
            )
        if isinstance(exc, openai.APIStatusError):
            if status is not None and status >= 500:
                return ProviderError("server_error", f"{where} failed (HTTP {status}){tries}: {said}", status=status)
            return ProviderError("bad_request", f"{where} rejected the request (HTTP {status}): {said}", status=status)
        return ProviderError("connection", f"request to {where} failed: {type(exc).__name__}")

    def _parse(self, completion: Any) -> DecisionBody:
        where = self.endpoint
        # Checked by attribute: a non-JSON body comes back as a str, a JSON one of the wrong shape unvalidated.
        choices = getattr(completion, "choices", None)
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = getattr(choice, "message", None)
        if message is None:
            raise ProviderError("malformed", f"{where} sent a response that is not a chat completion")
        content = getattr(message, "content", None)
        refusal = getattr(message, "refusal", None)
        finish = getattr(choice, "finish_reason", None)
        if refusal:
            raise ProviderError("refused", f"the model refused: {plain_text(str(refusal))[:200]}")
        if not isinstance(content, str) or not content.strip():
            raise ProviderError("malformed", f"{where} sent an empty answer")
        obj = extract_json_object(content)
        if obj is None:
            cut = " (cut off at the token limit)" if finish == "length" else ""
            raise ProviderError("malformed", f"the model's answer is not a JSON object{cut}")
        try:
            return DecisionBody.model_validate(obj)
        except ValidationError as exc:
            summary = _validation_summary(exc)
        # Raised outside the except block: the ValidationError (which quotes the answer) is not its __context__.
        raise ProviderError("schema", f"the model's answer breaks the decision schema: {summary}")


# --- offline rules -----------------------------------------------------------------------------------------------

OFFLINE_MODEL = "offline-rules-v1"
OFFLINE_RULES_VERSION = "rules-v1"

# Thresholds, all in units of the bar's own volatility (atr_pct) so one set fits every timeframe and symbol.
TREND_ATR = 1.0  # |EMA fast - EMA slow| of at least this many ATRs is a trend ...
MOMENTUM_Z = 1.0  # ... confirmed by a 15-bar return of at least this many ATR * sqrt(15)
RSI_HIGH = 70.0  # overbought: a trend BUY is not chased above it; mean-reversion SELL needs it
RSI_LOW = 30.0  # oversold
REVERSION_ATR = 1.5  # mean reversion needs the price this many ATRs from VWAP
MAX_SPREAD_BPS = 15.0  # no new position when the spread is wider
MAX_SIZE_PCT = 10.0  # size = MAX_SIZE_PCT * confidence
STOP_ATR, TARGET_ATR = 3.0, 4.5  # stop-loss and take-profit distances for a trend trade
MIN_STOP_PCT = 0.05  # stops never closer than this, in %
MIN_REWARD_RISK = 1.5  # take-profit at least this multiple of the stop-loss


def _f(x: float, spec: str) -> str:
    """Format without a negative zero ("-0.0" reads as a signal where there is none)."""
    text = format(x, spec)
    return text if text.strip("+-0.") else format(0.0, spec)


def _signal(s: MarketState) -> tuple[Action | None, float, str, float]:
    """(direction or None, confidence, rationale, take-profit %) from the features of a state."""
    a = s.atr_pct
    trend = s.ema_spread_pct / a
    momentum = s.ret_15 / (a * math.sqrt(15.0))
    stretch = s.vwap_dist_pct / a
    rsi = _f(s.rsi, ".0f")
    if s.rsi <= RSI_LOW and stretch <= -REVERSION_ATR and s.ret_1 > 0:
        conf = min(0.8, 0.5 + 0.05 * (-stretch - REVERSION_ATR) + 0.01 * (RSI_LOW - s.rsi))
        why = f"Mean reversion: oversold (RSI {rsi}), {_f(-stretch, '.1f')} ATR below VWAP and turning up."
        return Action.BUY, conf, why, min(abs(s.vwap_dist_pct), TARGET_ATR * a)
    if s.rsi >= RSI_HIGH and stretch >= REVERSION_ATR and s.ret_1 < 0:
        conf = min(0.8, 0.5 + 0.05 * (stretch - REVERSION_ATR) + 0.01 * (s.rsi - RSI_HIGH))
        why = f"Mean reversion: overbought (RSI {rsi}), {_f(stretch, '.1f')} ATR above VWAP and turning down."
        return Action.SELL, conf, why, min(abs(s.vwap_dist_pct), TARGET_ATR * a)
    strength = min(abs(trend) / TREND_ATR, abs(momentum) / MOMENTUM_Z)
    conf = min(0.9, 0.5 + 0.1 * strength)
    numbers = f"EMA spread {_f(trend, '+.1f')} ATR, 15-bar momentum {_f(momentum, '+.1f')} sigma, RSI {rsi}."
    if trend >= TREND_ATR and momentum >= MOMENTUM_Z and s.rsi < RSI_HIGH:
        return Action.BUY, conf, f"Uptrend: {numbers}", TARGET_ATR * a
    if trend <= -TREND_ATR and momentum <= -MOMENTUM_Z and s.rsi > RSI_LOW:
        return Action.SELL, conf, f"Downtrend: {numbers}", TARGET_ATR * a
    return None, 0.5, f"No edge: {numbers}", 0.0


def _hold(rationale: str, confidence: float = 0.5) -> DecisionBody:
    return DecisionBody(action=Action.HOLD, size_pct=0.0, confidence=round(confidence, 2), rationale=rationale)


def offline_rules(state: MarketState) -> DecisionBody:
    """The built-in rules: a pure, deterministic function of the state's features.

    Trend (EMA spread and 15-bar momentum, in ATR units) and mean reversion (RSI extreme, price stretched from
    VWAP, last bar turning) give a direction. FLAT: open in that direction, sized by confidence, with stop and
    target from atr_pct; no new position when the spread is too wide. LONG/SHORT: CLOSE when the direction is
    the opposite one, HOLD otherwise. Incomplete data (NaN, ATR of zero): HOLD.
    """
    needed = (state.ret_1, state.ret_15, state.ema_spread_pct, state.rsi, state.atr_pct, state.vwap_dist_pct)
    if not all(math.isfinite(x) for x in needed) or state.atr_pct <= 0:
        return _hold("Not enough data yet: some indicators are undefined or volatility is zero.", 0.0)
    direction, conf, why, target = _signal(state)
    conf = round(conf, 2)
    if state.position is PositionState.LONG:
        if direction is Action.SELL:
            return DecisionBody(action=Action.CLOSE, size_pct=0.0, confidence=conf, rationale=f"Exit long. {why}")
        return _hold(f"Keep long. {why}")
    if state.position is PositionState.SHORT:
        if direction is Action.BUY:
            return DecisionBody(action=Action.CLOSE, size_pct=0.0, confidence=conf, rationale=f"Exit short. {why}")
        return _hold(f"Keep short. {why}")
    if direction is None:
        return _hold(why)
    if math.isfinite(state.spread_bps) and state.spread_bps > MAX_SPREAD_BPS:
        return _hold(f"Spread {state.spread_bps:.1f} bps too wide to open. {why}")
    stop = min(50.0, max(MIN_STOP_PCT, STOP_ATR * state.atr_pct))
    take = min(100.0, max(MIN_REWARD_RISK * stop, target))
    return DecisionBody(
        action=direction,
        size_pct=round(MAX_SIZE_PCT * conf, 1),
        stop_loss_pct=round(stop, 3),
        take_profit_pct=round(take, 3),
        confidence=conf,
        rationale=why,
    )


class OfflineProvider:
    """The offline rules as a provider: no network, no key, microseconds; decisions are labelled OFFLINE."""

    name = "offline"
    model = OFFLINE_MODEL
    prompt_version = OFFLINE_RULES_VERSION

    def __repr__(self) -> str:
        return "OfflineProvider()"

    async def decide(self, state: MarketState) -> Decision:
        t0 = time.perf_counter()
        body = offline_rules(state)
        return Decision.about(
            state,
            body,
            DecisionMeta(
                provider=self.name,
                model=self.model,
                prompt_version=self.prompt_version,
                latency_ms=(time.perf_counter() - t0) * 1000.0,
                cache_status=CacheStatus.OFFLINE,
            ),
        )

    async def aclose(self) -> None:
        return None
