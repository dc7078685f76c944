#!/usr/bin/env python3
"""Answer quality and speed of a decision model on real market states.

Real captures (``--data``, Binance recordings replayed by ``states_from_recording``, as ``bench_cache.py`` does)
or candle files (``--candles``: a JSON array of ``[open_ms, open, high, low, close, volume]`` rows, or a CSV with
a date/datetime column and open, high, low, close, volume columns, in either time order) become MarketStates
through ``compute_state``. The model is asked at a fixed cadence of market time (``--every`` seconds; by default
the cadence that gives about ``--samples`` states), each state twice, through ``OpenAIProvider``: the same path
as the terminal, so its structured output, validation and errors are the terminal's.

Reported: schema failures (answers that are not a valid Decision, and other errors apart), the action
distribution, agreement with the offline rules (the same state through ``offline_rules``; with the share of
states where the rules act, and the agreement a constant answer would get, so a model that says the same thing
everywhere shows as such), self-agreement (the second answer's action equals the first's), latency p50/p99 and
completion tokens per second.

By default the embedded local model is started (``app.llm.local``); ``--url`` points at any OpenAI-compatible
endpoint instead. ``--part first|second`` takes one half of the states: tune on one half, report on the other.

    .venv/bin/python scripts/bench_model.py --candles FILE [--part second] [--samples 40] [--json]
    .venv/bin/python scripts/bench_model.py --data CAPTURE.gz ... [--symbol BTCUSDT] [--timeframe 1s] [--every 10]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.llm import prompt  # noqa: E402
from app.llm.providers import OpenAIProvider, ProviderError, offline_rules  # noqa: E402
from app.llm.schema import Action, Decision, hold_below_confidence  # noqa: E402
from app.market.candle_files import candle_timeframe, load_candles, states_from_candles  # noqa: E402
from app.market.candles import TIMEFRAMES  # noqa: E402
from app.market.features import MarketState, PositionState, states_from_recording  # noqa: E402

SCHEMA_REASONS = frozenset({"schema", "malformed", "refused"})  # the answer came back but is not a decision
POSITIONS = (PositionState.FLAT, PositionState.LONG, PositionState.SHORT)


# ----- choosing the states -----------------------------------------------------------------------------------


def pick_states(states: Sequence[MarketState], *, part: str, samples: int, every_s: float | None) -> list[MarketState]:
    """The half asked for, then the states at a fixed cadence: ``every_s`` seconds, or the cadence that gives
    about ``samples`` of them. At most ``samples`` (the earliest ones at that cadence)."""
    half = len(states) // 2
    chosen = list(states[:half] if part == "first" else states[half:] if part == "second" else states)
    if not chosen:
        return []
    if every_s is None:
        span_ms = chosen[-1].exchange_ms - chosen[0].exchange_ms
        every_ms = max(1, span_ms // max(1, samples))
    else:
        every_ms = int(every_s * 1000)
    out: list[MarketState] = []
    next_t = chosen[0].exchange_ms
    for s in chosen:
        if s.exchange_ms >= next_t:
            out.append(s)
            next_t = s.exchange_ms + every_ms
    return out[:samples]


def with_positions(states: Sequence[MarketState], mode: str) -> list[MarketState]:
    """FLAT everywhere, or FLAT / LONG / SHORT in turn (``mixed``: exercises CLOSE)."""
    if mode == "flat":
        return list(states)
    return [
        dataclasses.replace(s, position=POSITIONS[i % 3], position_pnl_sign=0 if i % 3 == 0 else 1 - 2 * (i // 3 % 2))
        for i, s in enumerate(states)
    ]


# ----- asking ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    action: str | None  # None: no decision (an error)
    error: str | None  # ProviderError reason
    latency_s: float
    completion_tokens: int
    confidence: float | None
    floored: str | None  # the action after the confidence floor (the local model's rule), None without a floor


async def ask(provider: OpenAIProvider, state: MarketState, floor: float | None) -> Answer:
    t0 = time.perf_counter()
    try:
        d: Decision = await provider.decide(state)
    except ProviderError as exc:
        return Answer(None, exc.reason, time.perf_counter() - t0, 0, None, None)
    assert d.body is not None
    floored = hold_below_confidence(d.body, floor).action.value if floor is not None else None
    return Answer(d.body.action.value, None, d.meta.latency_ms / 1000.0, d.meta.completion_tokens, d.body.confidence,
                  floored)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def floored_summary(first: Sequence[Answer], rules: Sequence[str]) -> dict[str, Any]:
    """The answers after the confidence floor, as the cards show them (first pass)."""
    judged = [(a.floored, r) for a, r in zip(first, rules, strict=True) if a.floored]
    if not judged:
        return {}
    acting = [(m, r) for m, r in judged if r != Action.HOLD.value]
    return {
        "floored_actions": {act.value: sum(1 for m, _ in judged if m == act.value) for act in Action},
        "floored_agreement_with_rules": sum(m == r for m, r in judged) / len(judged),
        "floored_agreement_where_rules_act": sum(m == r for m, r in acting) / len(acting) if acting else None,
    }


def summarize(states: Sequence[MarketState], first: Sequence[Answer], second: Sequence[Answer]) -> dict[str, Any]:
    rules = [offline_rules(s).action.value for s in states]
    answers = [*first, *second]
    ok = [a for a in answers if a.action is not None]
    pairs = [(a, b) for a, b in zip(first, second, strict=True) if a.action and b.action]
    judged = [(a.action, r) for a, r in zip(first, rules, strict=True) if a.action]
    acting = [(m, r) for m, r in judged if r != Action.HOLD.value]
    rule_counts = Counter(rules)
    latencies = [a.latency_s for a in ok]
    tokens = sum(a.completion_tokens for a in ok)
    return {
        "states": len(states),
        "requests": len(answers),
        "schema_failures": sum(1 for a in answers if a.error in SCHEMA_REASONS),
        "other_errors": dict(Counter(a.error for a in answers if a.error and a.error not in SCHEMA_REASONS)),
        "actions": {act.value: sum(1 for a in ok if a.action == act.value) for act in Action},
        "rules_actions": {act.value: rule_counts.get(act.value, 0) for act in Action},
        "agreement_with_rules": sum(m == r for m, r in judged) / len(judged) if judged else None,
        "agreement_where_rules_act": sum(m == r for m, r in acting) / len(acting) if acting else None,
        "rules_acting_states": len(acting),
        "best_constant_agreement": max(rule_counts.values()) / len(rules) if rules else None,
        "self_agreement": sum(a.action == b.action for a, b in pairs) / len(pairs) if pairs else None,
        "mean_confidence": float(np.mean([a.confidence for a in ok])) if ok else None,
        "confidences": dict(sorted(Counter(f"{a.confidence:g}" for a in ok).items())),
        **floored_summary(first, rules),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "tokens_per_s": tokens / sum(latencies) if latencies and sum(latencies) > 0 else None,
    }


async def run(states: Sequence[MarketState], args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        floor: float | None = None
        if args.url:
            provider = OpenAIProvider(args.url, args.model, api_key=args.api_key, timeout_s=args.timeout,
                                      max_retries=0)
        else:
            # The embedded model exactly as the terminal runs it: its child process, client, sampling and schema;
            # the confidence floor is applied here so both the model's own answers and the cards' are reported.
            from app.llm import local

            process = local.LocalModelProcess(threads=args.threads)
            stack.push_async_callback(process.stop)
            url = await process.start()
            if args.schema == "local":
                provider = local.local_client(url, process.api_key, timeout_s=args.timeout)
            else:  # the baseline: the local sampling with the strict schema every other endpoint gets
                options = {k: v for k, v in prompt.local_sampling_kwargs().items() if k != "response_format"}
                provider = OpenAIProvider(url, local.MODEL_ALIAS, api_key=process.api_key, timeout_s=args.timeout,
                                          max_retries=0, structured="json_schema", temperature=None,
                                          request_options=options)
            floor = prompt.LOCAL_MIN_CONFIDENCE if args.floor is None else args.floor
        stack.push_async_callback(provider.aclose)
        first = [await ask(provider, s, floor) for s in states]
        second = [await ask(provider, s, floor) for s in states]
        return {"model": provider.model, "prompt_version": prompt.PROMPT_VERSION, "schema": args.schema,
                "confidence_floor": floor,
                **summarize(states, first, second)}


def load_states(args: argparse.Namespace) -> tuple[list[MarketState], str]:
    if args.candles:
        candles = load_candles(args.candles)
        if candles.skipped:
            print(f"{candles.name}: skipped {candles.skip_report()}", file=sys.stderr)
        rows = candles.rows
        tf = candle_timeframe(rows)
        if args.timeframe and args.timeframe != tf:
            raise SystemExit(f"{args.candles.name} holds {tf} bars, not {args.timeframe}")
        symbol = args.symbol or args.candles.stem.split("_")[0].upper()
        return list(states_from_candles(rows, symbol=symbol, timeframe=tf, every_ms=TIMEFRAMES[tf])), tf
    tf = args.timeframe or "1s"
    symbol = args.symbol or "BTCUSDT"
    return list(states_from_recording([str(p) for p in args.data], symbol=symbol, timeframe=tf, every_ms=1000)), tf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", type=Path, help="Binance recording file(s) of one session, in order")
    src.add_argument("--candles", type=Path, help="a candle file (JSON rows or CSV)")
    ap.add_argument("--symbol", help="symbol (recordings: which one to replay; candles: the name shown)")
    ap.add_argument("--timeframe", help="bar length (recordings: default 1s; candle files: must match the file)")
    ap.add_argument("--every", type=float, help="seconds of market time between questions")
    ap.add_argument("--samples", type=int, default=40, help="at most this many states (default 40)")
    ap.add_argument("--part", choices=("all", "first", "second"), default="all", help="which half of the states")
    ap.add_argument("--positions", choices=("flat", "mixed"), default="flat",
                    help="mixed: FLAT, LONG, SHORT in turn (exercises CLOSE)")
    ap.add_argument("--url", help="an OpenAI-compatible endpoint instead of the embedded local model")
    ap.add_argument("--model", default="local", help="model name for --url")
    ap.add_argument("--api-key", help="API key for --url")
    ap.add_argument("--threads", type=int, default=2, help="threads of the embedded model")
    ap.add_argument("--schema", choices=("local", "strict"), default="local",
                    help="embedded model: its own schema (default) or the strict one other endpoints get (baseline)")
    ap.add_argument("--floor", type=float, help="confidence floor of the embedded model (default: the terminal's)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    all_states, tf = load_states(args)
    states = with_positions(pick_states(all_states, part=args.part, samples=args.samples, every_s=args.every),
                            args.positions)
    if not states:
        raise SystemExit("no market states in that input (too few bars?)")
    res = asyncio.run(run(states, args))
    source = [str(p.name) for p in args.data] if args.data else [args.candles.name]
    res = {"source": source, "part": args.part, "timeframe": tf, "positions": args.positions,
           "every_s": (states[1].exchange_ms - states[0].exchange_ms) / 1000 if len(states) > 1 else None,
           "machine": f"{platform.machine()}, {platform.python_version()}", **res}
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['model']} (prompt {res['prompt_version']}) on {', '.join(source)} [{args.part}], {tf} bars, "
          f"{res['states']} states x2, every {res['every_s']} s")
    for key in ("schema_failures", "other_errors", "actions", "rules_actions", "agreement_with_rules",
                "agreement_where_rules_act", "best_constant_agreement", "self_agreement", "mean_confidence",
                "confidences", "floored_actions", "floored_agreement_with_rules", "floored_agreement_where_rules_act",
                "latency_p50_s", "latency_p99_s", "tokens_per_s"):
        value = res.get(key)
        print(f"  {key:<28}{value:.3f}" if isinstance(value, float) and not math.isnan(value) else
              f"  {key:<28}{value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
