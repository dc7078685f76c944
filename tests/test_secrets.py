"""Secrets: environment over keyring over memory; a missing or failing keyring means memory only, said clearly."""

from __future__ import annotations

import logging

import keyring
import pytest
from keyring.backends import chainer, fail

from app import logs
from app.secrets import ENV_VARS, SERVICE, Secrets, forget_memory
from tests.keyring_backends import MemoryKeyring, RaisingKeyring

KEY = "tt-unit-key-0f9e8d7c6b5a"


@pytest.fixture(autouse=True)
def _clean():
    forget_memory()
    yield
    forget_memory()
    logs.forget_secrets()


@pytest.fixture
def use_backend():
    previous = keyring.get_keyring()

    def use(backend):
        keyring.set_keyring(backend)
        return backend

    yield use
    keyring.set_keyring(previous)


def test_keyring_round_trip_and_empty_value_deletes(use_backend):
    backend = use_backend(MemoryKeyring())
    s = Secrets(env={})
    assert s.backend_ok and s.backend_problem is None
    assert s.get("llm_api_key") is None and s.source("llm_api_key") is None
    assert s.set("llm_api_key", f"  {KEY}\n") == "keyring"  # pasted whitespace is stripped
    assert backend.store[(SERVICE, "llm_api_key")] == KEY
    assert s.get("llm_api_key") == KEY and s.source("llm_api_key") == "keyring"
    assert Secrets(env={}).get("llm_api_key") == KEY  # a new instance reads the keyring
    assert KEY in s.values()
    assert s.set("llm_api_key", "") == "keyring"
    assert (SERVICE, "llm_api_key") not in backend.store
    assert s.get("llm_api_key") is None and s.source("llm_api_key") is None
    assert s.set("binance_api_key", "") == "keyring"  # deleting what is not there is fine


def test_environment_overrides_the_keyring(use_backend):
    use_backend(MemoryKeyring())
    env = {"OPENAI_API_KEY": "tt-from-env-123456", "BINANCE_API_SECRET": "  "}
    s = Secrets(env=env)
    s.set("llm_api_key", KEY)
    s.set("binance_api_secret", "tt-secret-from-keyring")
    assert s.get("llm_api_key") == "tt-from-env-123456" and s.source("llm_api_key") == "env"
    # a blank environment variable does not count
    assert s.get("binance_api_secret") == "tt-secret-from-keyring" and s.source("binance_api_secret") == "keyring"
    assert set(s.values()) == {"tt-from-env-123456", KEY, "tt-secret-from-keyring"}
    assert ENV_VARS == {"llm_api_key": "OPENAI_API_KEY",
                        "binance_api_key": "BINANCE_API_KEY", "binance_api_secret": "BINANCE_API_SECRET",
                        "coinbase_api_key": "COINBASE_API_KEY", "coinbase_api_secret": "COINBASE_API_SECRET",
                        "kraken_api_key": "KRAKEN_API_KEY", "kraken_api_secret": "KRAKEN_API_SECRET"}


def test_unknown_name_is_an_error():
    with pytest.raises(ValueError, match="unknown secret"):
        Secrets(env={}).get("password")


def test_no_backend_means_memory_only_with_a_clear_message(use_backend, caplog):
    use_backend(fail.Keyring())
    caplog.set_level(logging.WARNING, logger="app.secrets")
    s = Secrets(env={})
    assert not s.backend_ok
    assert "No OS keyring" in s.backend_problem and "memory" in s.backend_problem
    assert s.set("binance_api_key", KEY) == "memory"
    assert s.get("binance_api_key") == KEY and s.source("binance_api_key") == "memory"
    assert Secrets(env={}).get("binance_api_key") == KEY  # one memory for the whole process
    assert Secrets(env={}).backend_problem == s.backend_problem
    warnings = [r for r in caplog.records if r.name == "app.secrets"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING  # logged once
    assert KEY not in caplog.text
    assert s.set("binance_api_key", "") == "memory" and s.get("binance_api_key") is None


class _EmptyChainer(chainer.ChainerBackend):
    backends = ()  # what the chainer finds on a machine without any keyring


def test_a_chainer_with_nothing_to_chain_is_no_backend(use_backend):
    use_backend(_EmptyChainer())
    assert not Secrets(env={}).backend_ok


def test_a_keyring_that_raises_falls_back_to_memory_without_echoing_the_value(use_backend, caplog):
    use_backend(RaisingKeyring())
    caplog.set_level(logging.WARNING)
    s = Secrets(env={})
    assert s.backend_ok  # it looks fine until it is used
    assert s.get("llm_api_key") is None
    assert not s.backend_ok and "OS keyring failed" in s.backend_problem and "locked" in s.backend_problem
    s2 = Secrets(env={})
    s2.get("llm_api_key")  # it raises again
    assert s2.backend_problem  # the same problem, not logged a second time
    assert s.set("llm_api_key", KEY) == "memory"
    assert s.get("llm_api_key") == KEY
    assert KEY not in caplog.text and KEY not in (s.backend_problem or "")


def test_set_failing_in_the_keyring_keeps_the_value_in_memory_and_masks_it(use_backend, caplog):
    use_backend(RaisingKeyring())
    caplog.set_level(logging.WARNING)
    s = Secrets(env={})
    assert s.set("binance_api_secret", KEY) == "memory"  # set before any read: the failure is in set_password
    assert "cannot store" in s.backend_problem and KEY not in s.backend_problem
    assert s.get("binance_api_secret") == KEY and s.source("binance_api_secret") == "memory"
    assert KEY not in caplog.text


def test_get_keyring_itself_raising_is_a_problem_not_a_crash(monkeypatch):
    def broken():
        raise RuntimeError("PYTHON_KEYRING_BACKEND names a class that cannot load")

    monkeypatch.setattr(keyring, "get_keyring", broken)
    s = Secrets(env={})
    assert not s.backend_ok and "RuntimeError" in s.backend_problem
    assert s.set("llm_api_key", KEY) == "memory"


def test_values_read_are_registered_for_the_log_scrubber(use_backend):
    use_backend(MemoryKeyring()).store[(SERVICE, "binance_api_key")] = KEY
    logs.forget_secrets()
    assert Secrets(env={}).get("binance_api_key") == KEY
    assert logs.scrub_text(f"auth failed for {KEY}") == "auth failed for ***"
    Secrets(env={"OPENAI_API_KEY": "tt-env-key-abcdef"}).get("llm_api_key")
    assert logs.scrub_text("tt-env-key-abcdef") == "***"
