"""The log dock and the console are not flooded by the HTTP client's per-request lines: a decision asked of an
OpenAI-compatible endpoint (the real provider against the dev server on loopback) leaves no "HTTP Request" line."""

from __future__ import annotations

import logging

import pytest

from app import logs
from app.llm.providers import OpenAIProvider
from app.ui.log_dock import BufferingHandler
from tests.llm.test_providers import SECRET, dev_server, state


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            if h is not logs._recent:
                h.close()
    root.setLevel(level)


@pytest.mark.asyncio
@pytest.mark.parametrize("verbose", [False, True])
async def test_a_model_request_leaves_no_http_request_line_in_the_log_dock(tmp_path, root_logging, verbose):
    dock = BufferingHandler()
    root_logging.addHandler(dock)
    logs.setup_logging(verbose=verbose, log_dir=tmp_path / "logs")
    srv = dev_server.start_server()
    try:
        async with OpenAIProvider(srv.url, "gpt-4o-mini", api_key=SECRET, max_retries=0) as provider:
            decision = await provider.decide(state())
    finally:
        srv.stop()
    assert not decision.is_error
    lines = [line for _, line in dock.take()]
    http = [line for line in lines if "HTTP Request" in line or "HTTP Response" in line]
    assert http == [], http
    logging.getLogger("app.test").warning("the terminal's own lines still arrive")
    assert any("own lines" in line for _, line in dock.take())


def test_every_http_client_logger_is_quieted(root_logging, tmp_path):
    # openai's client speaks through httpx2 / httpcore2 (not httpx / httpcore): quieting those alone left the
    # dock full of "HTTP Request: POST .../chat/completions" lines.
    logs.setup_logging(verbose=False, log_dir=tmp_path / "logs")
    for name in ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "websockets"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
