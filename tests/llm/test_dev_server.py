"""The LLM dev server on loopback: the OpenAI API it speaks, its output modes, faults, latency and CLI."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest

from app.llm import prompt
from app.llm.providers import extract_json_object, offline_rules
from app.llm.schema import Action, DecisionBody, response_format_json_schema
from app.market.features import MarketState

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "llm_dev_server.py"


def load_dev_server() -> ModuleType:
    """scripts/llm_dev_server.py as a module (scripts/ is not a package)."""
    if "llm_dev_server" in sys.modules:
        return sys.modules["llm_dev_server"]
    spec = importlib.util.spec_from_file_location("llm_dev_server", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["llm_dev_server"] = module
    spec.loader.exec_module(module)
    return module


dev_server = load_dev_server()

STATE = MarketState(
    symbol="BTCUSDT",
    timeframe="1m",
    exchange_ms=1_723_161_600_000,
    bar_close_ms=1_723_161_600_000,
    last_price=60_000.0,
    ema_fast=60_120.0,
    ema_slow=60_000.0,
    vwap=59_940.0,
    ret_1=0.05,
    ret_5=0.3,
    ret_15=0.8,
    ret_60=1.5,
    ema_spread_pct=0.2,
    rsi=62.0,
    atr_pct=0.1,
    vwap_dist_pct=0.1,
    volume_ratio=1.3,
    spread_bps=0.5,
    move_pct=0.02,
)
RULES = offline_rules(STATE)  # BUY


def completion_request(response_format: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "dev-model", "messages": prompt.render(STATE), **extra}
    if response_format is not None:
        body["response_format"] = response_format
    return body


@pytest.fixture
def serve():
    servers = []

    def start(**options: Any):
        server = dev_server.start_server(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


_http = httpx.Client(timeout=10)  # one client: a new one per request costs an SSL context each


@pytest.fixture(scope="module", autouse=True)
def _close_http():
    yield
    _http.close()


def post(srv, body: Any, path: str = "/chat/completions", **kwargs: Any) -> httpx.Response:
    return _http.post(srv.url + path, json=body, **kwargs)


def content_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


# --- the API -----------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_models_list_through_the_openai_client(serve) -> None:
    import openai

    srv = serve(model="my-dev-model")
    async with openai.AsyncOpenAI(base_url=srv.url, api_key="unused", max_retries=0) as client:
        models = await client.models.list()
    assert [m.id for m in models.data] == ["my-dev-model"]


def test_chat_completion_answers_with_the_rules_and_counts_tokens(serve) -> None:
    srv = serve()
    response = post(srv, completion_request(response_format_json_schema()))
    payload = response.json()
    assert payload["object"] == "chat.completion" and payload["model"] == "dev-model"
    choice = payload["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    assert DecisionBody.model_validate_json(choice["message"]["content"]) == RULES
    usage = payload["usage"]
    assert usage["prompt_tokens"] > 100 and usage["completion_tokens"] > 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert (srv.stats.requests, srv.stats.completions, srv.stats.answered) == (1, 1, 1)
    assert srv.stats.modes == {"json_schema": 1}


def test_json_object_mode_answers_bare_json(serve) -> None:
    srv = serve()
    content = content_of(post(srv, completion_request({"type": "json_object"})))
    assert DecisionBody.model_validate(orjson.loads(content)) == RULES


def test_text_mode_wraps_the_json_in_prose_both_ways(serve) -> None:
    srv = serve()
    contents = [content_of(post(srv, completion_request())) for _ in range(2)]
    assert any("```json" in c for c in contents) and any("```" not in c for c in contents)
    for content in contents:
        assert not content.startswith("{")
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(content)
        assert DecisionBody.model_validate(extract_json_object(content)) == RULES
    assert srv.stats.modes == {"text": 2}


def test_rejecting_structured_outputs_like_an_older_server(serve) -> None:
    srv = serve(reject_json_schema=True, reject_json_object=True)
    for fmt in (response_format_json_schema(), {"type": "json_object"}):
        response = post(srv, completion_request(fmt))
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "response_format" and fmt["type"] in error["message"]
    assert content_of(post(srv, completion_request()))  # text still works
    assert srv.stats.rejected_formats == 2


def test_bad_requests(serve) -> None:
    srv = serve()
    assert post(srv, completion_request(stream=True)).status_code == 400
    assert post(srv, {"model": "m", "messages": [{"role": "user", "content": "buy!"}]}).status_code == 400
    assert httpx.post(srv.url + "/chat/completions", content=b"not json", timeout=5).status_code == 400
    assert post(srv, completion_request(), path="/completions").status_code == 404
    assert httpx.get(srv.url + "/nothing", timeout=5).status_code == 404
    assert post(srv, completion_request({"type": "grammar"})).status_code == 400


def test_api_key_is_checked_when_configured(serve) -> None:
    srv = serve(api_key="k-123")
    assert post(srv, completion_request()).status_code == 401
    assert post(srv, completion_request(), headers={"Authorization": "Bearer k-123"}).status_code == 200
    assert post(srv, completion_request(), headers={"api-key": "k-123"}).status_code == 200
    assert httpx.get(srv.url + "/models", timeout=5).status_code == 401


def test_azure_style_path_is_accepted(serve) -> None:
    srv = serve()
    base = srv.url.removesuffix("/v1")
    response = httpx.post(
        f"{base}/openai/deployments/dep/chat/completions?api-version=2024-10-21", json=completion_request(), timeout=5
    )
    assert response.status_code == 200


# --- faults ------------------------------------------------------------------------------------------------------


def test_fault_429_sends_retry_after(serve) -> None:
    srv = serve(fault="429", fault_rate=1.0, retry_after_s=2.5)
    response = post(srv, completion_request())
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3" and response.headers["retry-after-ms"] == "2500"
    assert srv.stats.faults == {"429": 1} and srv.stats.answered == 0


def test_fault_500(serve) -> None:
    srv = serve(fault="500", fault_rate=1.0)
    response = post(srv, completion_request())
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"


def test_fault_malformed_content_is_not_json(serve) -> None:
    srv = serve(fault="malformed", fault_rate=1.0)
    content = content_of(post(srv, completion_request({"type": "json_object"})))
    assert content.startswith("{") and extract_json_object(content) is None


def test_fault_schema_breaks_the_schema(serve) -> None:
    srv = serve(fault="schema", fault_rate=1.0)
    answer = orjson.loads(content_of(post(srv, completion_request({"type": "json_object"}))))
    assert answer["action"] == "YOLO" and answer["size_pct"] == 500


def test_fault_injection_is_valid_and_carries_the_injection_as_text(serve) -> None:
    srv = serve(fault="injection", fault_rate=1.0)
    body = DecisionBody.model_validate_json(content_of(post(srv, completion_request({"type": "json_object"}))))
    assert body.action is RULES.action is Action.BUY and body.size_pct == RULES.size_pct
    assert "IGNORE YOUR LIMITS" in body.rationale


def test_fault_timeout_holds_the_request_and_stops_promptly(serve) -> None:
    srv = serve(fault="timeout", fault_rate=1.0)
    with pytest.raises(httpx.ReadTimeout):
        post(srv, completion_request(), timeout=0.2)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 5, "stop() must wake a request sleeping in a timeout fault"


def test_fault_rate_and_fault_count(serve) -> None:
    srv = serve(fault="500", fault_rate=0.3, seed=7)
    statuses = [post(srv, completion_request()).status_code for _ in range(100)]
    assert statuses.count(500) == srv.stats.faults["500"] and statuses.count(200) == srv.stats.answered
    assert 10 <= statuses.count(500) <= 50
    srv = serve(fault="500", fault_count=2)
    assert [post(srv, completion_request()).status_code for _ in range(4)] == [500, 500, 200, 200]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        dev_server.DevServerOptions(fault="explode")
    with pytest.raises(ValueError):
        dev_server.DevServerOptions(latency_ms=(800.0, 200.0))
    assert dev_server.parse_latency("2000-8000") == (2000.0, 8000.0)
    assert dev_server.parse_latency("500") == (500.0, 500.0)


# --- latency -----------------------------------------------------------------------------------------------------


def test_latency_is_a_right_skewed_distribution_within_the_range() -> None:
    server = dev_server.DevServer(options=dev_server.DevServerOptions(latency_ms=(2000.0, 8000.0), seed=3))
    try:
        samples = [server._latency_s() for _ in range(4000)]
    finally:
        server._httpd.server_close()
    assert min(samples) >= 2.0 and max(samples) <= 8.0
    assert statistics.median(samples) == pytest.approx(4.0, rel=0.1)  # the geometric middle of 2 and 8
    assert statistics.mean(samples) > statistics.median(samples)  # a long right tail, as real models have
    assert statistics.stdev(samples) > 0.5


def test_latency_delays_the_answer(serve) -> None:
    srv = serve(latency_ms=(300.0, 300.0))
    t0 = time.monotonic()
    content_of(post(srv, completion_request()))
    assert time.monotonic() - t0 >= 0.29


# --- the CLI -----------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serves_until_interrupted() -> None:
    port = _free_port()
    args = ["--port", str(port), "--model", "cli-model", "--latency-ms", "0-0"]
    args += ["--fault", "500", "--fault-rate", "0.5", "--seed", "1"]
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in banner and "cli-model" in banner, banner
        url = f"http://127.0.0.1:{port}/v1"
        assert httpx.get(url + "/models", timeout=5).json()["data"][0]["id"] == "cli-model"
        statuses = {
            httpx.post(url + "/chat/completions", json=completion_request(), timeout=5).status_code for _ in range(20)
        }
        assert statuses == {200, 500}
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "served 21 requests, 20 completions" in out
