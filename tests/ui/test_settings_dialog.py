"""The settings dialog: errors as you type, Save only when valid, the file it writes, and the API key's path."""

from __future__ import annotations

from decimal import Decimal

import pytest
from PySide6 import QtCore

from app.config import Settings
from app.settings_store import load_settings
from app.ui.settings_dialog import SettingsDialog, key_source_text

SECRET = "sk-test-DIALOG-91c2e"


class FakeSecrets:
    """The interface of app.secrets: get / set / source / backend_ok / backend_problem."""

    def __init__(self, *, backend_ok: bool = True, problem: str | None = None, env: bool = False) -> None:
        self.backend_ok = backend_ok
        self.backend_problem = problem
        self.values: dict[str, str] = {}
        self.sources: dict[str, str] = {"llm_api_key": "env"} if env else {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> str:
        where = "keyring" if self.backend_ok else "memory"
        self.values[name] = value
        self.sources[name] = where
        return where

    def source(self, name: str) -> str | None:
        return self.sources.get(name)


@pytest.fixture
def make_dialog(qtbot, tmp_path):
    def make(settings: Settings | None = None, secrets=None) -> SettingsDialog:
        dialog = SettingsDialog(settings or Settings(), tmp_path / "cfg" / "settings.toml", secrets)
        qtbot.addWidget(dialog)
        dialog.show()
        return dialog

    return make


def retype(qtbot, editor, text: str) -> None:
    editor.clear()
    qtbot.keyClicks(editor, text)


def test_negative_risk_limit_shows_the_error_beside_the_field_and_disables_save(qtbot, make_dialog):
    dialog = make_dialog()
    assert dialog.save_button.isEnabled()
    field = dialog.editors["max_order_notional"]
    retype(qtbot, field, "-5")
    error = dialog.error_labels["max_order_notional"]
    assert "greater than 0" in error.text() and error.property("level") == "bad"
    assert not dialog.save_button.isEnabled()
    assert "invalid" in dialog.summary.text()

    retype(qtbot, field, "2500")
    assert error.text() == "" and error.property("level") == "ok"
    assert dialog.save_button.isEnabled()
    assert "Max order value" in dialog.summary.text() and "next time" in dialog.summary.text()


def test_wrong_types_and_bad_urls_are_caught_as_you_type(qtbot, make_dialog):
    dialog = make_dialog()
    retype(qtbot, dialog.editors["max_open_orders"], "ten")
    assert "valid integer" in dialog.error_labels["max_open_orders"].text()
    retype(qtbot, dialog.editors["max_open_orders"], "4")
    retype(qtbot, dialog.editors["llm_url"], "ftp//x")
    assert "http:// or https://" in dialog.error_labels["llm_url"].text()
    assert not dialog.save_button.isEnabled()
    retype(qtbot, dialog.editors["llm_url"], "")  # empty: the offline rules
    assert dialog.save_button.isEnabled() and dialog.candidate.llm_url is None
    retype(qtbot, dialog.editors["cache_tolerances.rsi"], "-1")
    assert "positive" in dialog.error_labels["cache_tolerances.rsi"].text()
    assert not dialog.save_button.isEnabled()


def test_save_writes_a_file_that_loads_back_equal_and_says_when_it_takes_effect(qtbot, make_dialog):
    dialog = make_dialog()
    saved = []
    dialog.saved.connect(saved.append)
    retype(qtbot, dialog.editors["maker_fee"], "0.00075")
    retype(qtbot, dialog.editors["symbols"], "ethusdt, btcusdt")
    retype(qtbot, dialog.editors["cache_tolerances.rsi"], "4")
    retype(qtbot, dialog.editors["perf_thresholds_ms.loop_lag"], "8")
    dialog.editors["theme"].setCurrentText("light")
    dialog.editors["auto_approve"].setChecked(True)
    qtbot.mouseClick(dialog.save_button, QtCore.Qt.MouseButton.LeftButton)

    loaded = load_settings(dialog.path)
    assert loaded.problems == []
    assert loaded.settings == dialog.candidate == saved[0]
    s = loaded.settings
    assert s.maker_fee == Decimal("0.00075") and str(s.maker_fee) == "0.00075"
    assert s.symbols == ["ETHUSDT", "BTCUSDT"] and s.theme == "light" and s.auto_approve
    assert s.cache_tolerances == {"rsi": 4.0} and s.perf_thresholds_ms["loop_lag"] == 8.0
    msg = dialog.message.text()
    assert msg.startswith(f"Saved to {dialog.path}.") and "next start" in msg and "Theme" in msg
    assert dialog.message.property("level") == "ok"
    assert dialog.summary.text() == "No changes."  # what was saved is the new baseline


def test_api_key_goes_to_the_secrets_store_never_to_the_file_or_the_screen(qtbot, make_dialog):
    secrets = FakeSecrets()
    dialog = make_dialog(secrets=secrets)
    assert dialog.api_key.echoMode() == dialog.api_key.EchoMode.Password
    assert dialog.api_key_source.text() == "not set; a key saved here goes to the OS keyring"
    qtbot.keyClicks(dialog.api_key, SECRET)
    assert "API key" in dialog.summary.text()
    qtbot.mouseClick(dialog.save_button, QtCore.Qt.MouseButton.LeftButton)

    assert secrets.values == {"llm_api_key": SECRET}
    assert SECRET not in dialog.path.read_text()
    assert dialog.api_key.text() == ""
    assert dialog.api_key_source.text() == "stored in the OS keyring"
    assert "API key stored in the OS keyring" in dialog.message.text()
    shown = [w.text() for w in dialog.findChildren(type(dialog.message))]
    assert not any(SECRET in t for t in shown)


def test_key_source_is_said_in_words(make_dialog):
    assert key_source_text(FakeSecrets(env=True)).startswith("from OPENAI_API_KEY environment variable")
    no_backend = FakeSecrets(backend_ok=False, problem="no recommended backend was available")
    assert key_source_text(no_backend) == "not set. no recommended backend was available"
    no_backend.set("llm_api_key", "x")
    assert key_source_text(no_backend) == "in memory only for this run. no recommended backend was available"
    dialog = make_dialog(secrets=None)
    assert not dialog.api_key.isEnabled()


def test_the_dialog_shows_the_settings_it_was_given(make_dialog):
    s = Settings(symbol="SOLUSDT", max_position_value=Decimal("1.25"), llm_url="http://127.0.0.1:9/v1",
                 cache_tolerances={"ret_1": 0.02})
    dialog = make_dialog(s)
    assert dialog.editors["symbol"].text() == "SOLUSDT"
    assert dialog.editors["max_position_value"].text() == "1.25"
    assert dialog.editors["llm_url"].text() == "http://127.0.0.1:9/v1"
    assert dialog.editors["cache_tolerances.ret_1"].text() == "0.02"
    assert dialog.editors["cache_tolerances.rsi"].text() == ""
    assert dialog.candidate == s and dialog.summary.text() == "No changes."
    assert [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())] == [
        "Market data", "Model", "Cache", "Live trading", "Risk && fees", "Performance", "Appearance", "Keys"]


def test_a_key_is_applied_even_when_the_file_cannot_be_written(make_dialog, qtbot, tmp_path, monkeypatch):
    secrets = FakeSecrets(backend_ok=False, problem="no keyring here")
    dialog = make_dialog(secrets=secrets)
    import app.ui.settings_dialog as module

    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "save_settings", disk_full)
    dialog.api_key.setText("tt-new-key-0001")
    with qtbot.waitSignal(dialog.key_saved, timeout=1000):
        assert not dialog.save()
    assert secrets.values["llm_api_key"] == "tt-new-key-0001"
    text = dialog.message.text()
    assert "Could not write" in text and "kept in memory only" in text and "tt-new-key-0001" not in text
