"""API keys: environment variables first, then the OS keyring, else memory for this process only.

Names and their environment variables (an environment variable, when set and not empty, always wins):

    llm_api_key          OPENAI_API_KEY          key of the OpenAI-compatible model endpoint
    binance_api_key      BINANCE_API_KEY         live trading on Binance spot (testnet keys for the testnet)
    binance_api_secret   BINANCE_API_SECRET
    coinbase_api_key     COINBASE_API_KEY        live trading on Coinbase Advanced Trade
    coinbase_api_secret  COINBASE_API_SECRET
    kraken_api_key       KRAKEN_API_KEY          live trading on Kraken
    kraken_api_secret    KRAKEN_API_SECRET

Stored values live in the OS keyring under the service ``ai-trading-terminal`` with the name as user name. Where
no usable keyring exists (keyring's ``fail`` or ``null`` backend, a chainer with nothing to chain, or a backend
that raises) ``backend_ok`` is False, ``backend_problem`` says why in a sentence for the trader, and keys entered
in this session stay in memory only (shared by every ``Secrets`` of the process) and are gone on exit.

A value is never logged, never written to the config file, and every value read or stored is registered with
``app.logs.register_secret`` so the log scrubber and crash reports mask it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Literal

from app.logs import register_secret, scrub_text

SERVICE = "ai-trading-terminal"
# Exchanges the terminal can trade live on with keys of the trader's (the built-in exchange makes a pair per run).
LIVE_EXCHANGES: tuple[str, ...] = ("binance", "coinbase", "kraken")
ENV_VARS: dict[str, str] = {
    "llm_api_key": "OPENAI_API_KEY",
    **{f"{ex}_api_{part}": f"{ex.upper()}_API_{part.upper()}" for ex in LIVE_EXCHANGES for part in ("key", "secret")},
}
NAMES: tuple[str, ...] = tuple(ENV_VARS)

Source = Literal["env", "keyring", "memory"]

log = logging.getLogger(__name__)

_process_memory: dict[str, str] = {}  # keys entered while no keyring works: this process only
_warned: set[str] = set()  # each distinct backend problem is logged once per process
_warned_lock = threading.Lock()

_NO_BACKEND = ("No OS keyring is available on this system, so API keys entered here are kept in memory for this "
               "session only. Set them in environment variables (e.g. OPENAI_API_KEY) to keep them across runs.")


def _problem_from(exc: BaseException, *values: str | None) -> str:
    detail = scrub_text(str(exc) or type(exc).__name__, [v for v in values if v])
    return (f"The OS keyring failed ({type(exc).__name__}: {detail[:200]}), so API keys are kept in memory for "
            "this session only.")


def _warn_once(problem: str) -> None:
    with _warned_lock:
        if problem in _warned:
            return
        _warned.add(problem)
    log.warning("%s", problem)


def forget_memory() -> None:
    """Tests only: drop the keys held in memory and the record of problems already logged."""
    _process_memory.clear()
    with _warned_lock:
        _warned.clear()


class Secrets:
    """See the module docstring. ``env`` and ``backend`` are for tests: by default ``os.environ`` and
    ``keyring.get_keyring()``. Keyring reads are cached per instance."""

    def __init__(self, env: Mapping[str, str] | None = None, backend: object | None = None) -> None:
        self._env = os.environ if env is None else env
        self._memory = _process_memory
        self._cache: dict[str, str | None] = {}
        self._backend = backend
        self._ok: bool | None = None  # probed on first need: a key from the environment needs no keyring
        self._problem: str | None = None

    @property
    def backend_ok(self) -> bool:
        """True while the OS keyring works; False (for good) after it was found missing or raised."""
        if self._ok is None:
            self._probe()
        return bool(self._ok)

    @property
    def backend_problem(self) -> str | None:
        """Why keys are kept in memory only, in a sentence for the trader; None while the keyring works."""
        if self._ok is None:
            self._probe()
        return self._problem

    def _probe(self) -> None:
        try:
            if self._backend is None:
                self._backend = self._detect()
            problem = self._unusable(self._backend)
        except Exception as exc:  # a broken keyring install or PYTHON_KEYRING_BACKEND naming a bad class
            problem = _problem_from(exc)
        if problem:
            self._fail(problem)
        else:
            self._ok = True

    @staticmethod
    def _detect():
        import keyring

        return keyring.get_keyring()

    @staticmethod
    def _unusable(backend) -> str | None:
        from keyring.backends import chainer, fail, null

        if isinstance(backend, fail.Keyring | null.Keyring):
            return _NO_BACKEND
        if isinstance(backend, chainer.ChainerBackend) and not type(backend).backends:
            return _NO_BACKEND
        return None

    def _fail(self, problem: str) -> None:
        self._ok = False
        self._problem = problem
        _warn_once(problem)

    @staticmethod
    def _check(name: str) -> None:
        if name not in ENV_VARS:
            raise ValueError(f"unknown secret {name!r}; known: {', '.join(NAMES)}")

    # --- reading ---

    def _env_value(self, name: str) -> str | None:
        value = (self._env.get(ENV_VARS[name]) or "").strip()
        return value or None

    def _keyring_value(self, name: str) -> str | None:
        if not self.backend_ok:
            return None
        if name not in self._cache:
            try:
                value = self._backend.get_password(SERVICE, name)
            except Exception as exc:
                self._fail(_problem_from(exc))
                return None
            self._cache[name] = value or None
            register_secret(value)
        return self._cache[name]

    def source(self, name: str) -> Source | None:
        """Where ``get(name)`` takes its value from, or None if there is none."""
        self._check(name)
        if self._env_value(name):
            return "env"
        if name in self._memory:
            return "memory"
        if self._keyring_value(name):
            return "keyring"
        return None

    def get(self, name: str) -> str | None:
        self._check(name)
        value = self._env_value(name)
        if value:
            register_secret(value)
            return value
        if name in self._memory:
            return self._memory[name]
        return self._keyring_value(name)

    def values(self) -> list[str]:
        """Every secret value currently known (environment, memory, keyring), for scrubbing."""
        found: list[str] = []
        for name in NAMES:
            for value in (self._env_value(name), self._memory.get(name), self._keyring_value(name)):
                if value and value not in found:
                    found.append(value)
        return found

    # --- writing ---

    def set(self, name: str, value: str | None) -> Source:
        """Store ``value`` (stripped) in the keyring, or in memory if there is no working keyring; an empty value
        deletes it from both. Returns where it went: "keyring" or "memory". An environment variable of the same
        name still overrides it (see ``source``)."""
        self._check(name)
        value = (value or "").strip()
        if not value:
            self._memory.pop(name, None)
            self._cache[name] = None
            if self.backend_ok:
                self._delete_from_keyring(name)
            return "keyring" if self.backend_ok else "memory"
        register_secret(value)
        if self.backend_ok:
            try:
                self._backend.set_password(SERVICE, name, value)
            except Exception as exc:
                self._fail(_problem_from(exc, value))
            else:
                self._cache[name] = value
                self._memory.pop(name, None)
                return "keyring"
        self._memory[name] = value
        return "memory"

    def _delete_from_keyring(self, name: str) -> None:
        from keyring.errors import PasswordDeleteError

        try:
            self._backend.delete_password(SERVICE, name)
        except PasswordDeleteError:
            pass  # nothing stored: already deleted
        except Exception as exc:
            self._fail(_problem_from(exc))


def exchange_key_names(exchange: str) -> tuple[str, str]:
    """The secret names of an exchange's API key and secret (``binance`` -> binance_api_key, binance_api_secret)."""
    if exchange not in LIVE_EXCHANGES:
        raise ValueError(f"no exchange keys for {exchange!r}; known: {', '.join(LIVE_EXCHANGES)}")
    return f"{exchange}_api_key", f"{exchange}_api_secret"
