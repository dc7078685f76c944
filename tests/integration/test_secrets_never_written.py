"""A real terminal session with a known API key: the key reaches the model server and no file the terminal wrote.
And a keyring that raises: the terminal says so and still starts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson

from tests.llm.dev_server import load as load_dev_server

ROOT = Path(__file__).resolve().parents[2]


class EchoingProxy:
    """Sits in front of the dev model server. The first completion gets a 401 and the second a 500, each echoing
    the key it was sent (without "Bearer ", and the key is not "sk-" shaped, so only exact-value scrubbing can
    catch it); the rest are forwarded. Records every Authorization header it receives."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.authorizations: list[str] = []
        self.completions = 0
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=30)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                with proxy._lock:
                    proxy.authorizations.append(auth)
                    n = proxy.completions = proxy.completions + (method == "POST")
                given = auth.removeprefix("Bearer ")
                if method == "POST" and n in (1, 2):
                    status, kind = (401, "invalid_request_error") if n == 1 else (500, "server_error")
                    error = {"message": f"request with credentials {given} was refused", "type": kind,
                             "param": None, "code": given}
                    self._reply(status, orjson.dumps({"error": error}))
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                r = proxy._http.request(method, proxy.upstream + self.path, content=body, headers=headers)
                self._reply(r.status_code, r.content, r.headers.get("content-type", "application/json"))

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        return Handler

    def start(self) -> EchoingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


@contextmanager
def model_server(api_key: str | None) -> Iterator[tuple[object, EchoingProxy]]:
    server = load_dev_server().start_server(api_key=api_key)
    proxy = EchoingProxy(server.url).start()
    try:
        yield server, proxy
    finally:
        proxy.stop()
        server.stop()


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PYTHON_KEYRING_BACKEND")}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "HOME"):
        (tmp_path / name.lower()).mkdir()
        env[name] = str(tmp_path / name.lower())
    env.update(QT_QPA_PLATFORM="offscreen", **extra)
    return env


def run_terminal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_known_key_reaches_the_server_and_no_file_the_terminal_wrote(tmp_path):
    key = f"tt-known-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    # A keyring that forgets everything: nothing may land in the tester's own keyring.
    env = isolated_env(tmp_path, OPENAI_API_KEY=key, PYTHON_KEYRING_BACKEND="tests.keyring_backends.MemoryKeyring")
    journal = tmp_path / "journal" / "journal.sqlite3"
    with model_server(api_key=key) as (server, proxy):
        proc = run_terminal(env, "--smoke-test", "6", "--llm-url", proxy.url, "--model", "dev-model",
                            "--decision-timeframe", "1s", "--journal", str(journal), "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    # The key was sent (the dev server refuses any other, so an answer proves it) and echoed back twice.
    assert f"Bearer {key}" in proxy.authorizations and proxy.completions >= 3
    assert server.stats.answered >= 1, "the terminal never got an answer from the model server"
    assert key not in proc.stdout and key not in proc.stderr
    assert "***" in proc.stderr  # the echoed key was seen and masked

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert "terminal.log" in names and "journal.sqlite3" in names, sorted(names)
    needle = key.encode()
    leaks = [str(p) for p in written if needle in p.read_bytes()]
    assert leaks == [], f"the key was written to {leaks}"
    log_file = next(p for p in written if p.name == "terminal.log")
    assert log_file.stat().st_size > 0 and "DEBUG" in log_file.read_text(encoding="utf-8")


def test_a_keyring_that_raises_is_reported_and_the_terminal_still_starts(tmp_path):
    env = isolated_env(tmp_path, PYTHON_KEYRING_BACKEND="tests.keyring_backends.RaisingKeyring")
    with load_dev_server().serve() as server:
        proc = run_terminal(env, "--smoke-test", "4", "--llm-url", server.url, "--model", "dev-model",
                            "--decision-timeframe", "1s", "--journal", str(tmp_path / "j.sqlite3"))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "smoke test passed" in proc.stdout
    assert "The OS keyring failed (KeyringError: the keyring daemon is locked)" in proc.stderr
    assert "kept in memory" in proc.stderr and "Traceback" not in proc.stderr
    assert server.stats.completions >= 1  # it went on to ask the model, without a key
