"""Exchange keys in File > Settings: a key and secret per exchange, masked, stored in the OS keyring through
app.secrets (the tests' in-memory keyring backend here), never in settings.toml; Clear deletes them; the source is
shown and the environment wins. Offscreen."""

from __future__ import annotations

import pytest

from app.config import Settings
from app.secrets import SERVICE, Secrets
from app.ui.settings_dialog import SettingsDialog
from tests.keyring_backends import MemoryKeyring

KEY, SECRET = "bnc-key-7f3a-DIALOG", "bnc-secret-19e0-DIALOG"


@pytest.fixture
def keyring() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def make_dialog(qtbot, tmp_path, keyring):
    def make(env: dict[str, str] | None = None) -> SettingsDialog:
        dialog = SettingsDialog(Settings(), tmp_path / "cfg" / "settings.toml", Secrets(env=env or {}, backend=keyring))
        qtbot.addWidget(dialog)
        dialog.show()
        return dialog

    return make


def test_a_pair_goes_to_the_keyring_on_save_never_to_the_file_or_the_screen(qtbot, make_dialog, keyring, tmp_path):
    dialog = make_dialog()
    row = dialog.exchange_keys.rows["binance"]
    assert set(dialog.exchange_keys.rows) == {"binance", "coinbase", "kraken"}
    assert row.key.echoMode() == row.key.EchoMode.Password and row.secret.echoMode() == row.secret.EchoMode.Password
    assert row.source.text().startswith("not set")
    qtbot.keyClicks(row.key, KEY)
    qtbot.keyClicks(row.secret, SECRET)
    assert "Binance keys" in dialog.summary.text()
    assert dialog.save()
    assert keyring.store == {(SERVICE, "binance_api_key"): KEY, (SERVICE, "binance_api_secret"): SECRET}
    written = (tmp_path / "cfg" / "settings.toml").read_text()
    assert KEY not in written and SECRET not in written
    assert row.key.text() == "" and row.secret.text() == ""
    assert row.source.text() == "stored in the OS keyring"
    assert "Binance keys stored in the OS keyring" in dialog.message.text()
    assert KEY not in dialog.message.text() and SECRET not in dialog.message.text()
    # What live_start reads: the same names, through app.secrets.
    from app.trading.live_start import exchange_keys

    assert exchange_keys("binance", Secrets(env={}, backend=keyring)) == (KEY, SECRET)


def test_half_a_pair_is_refused_beside_it(qtbot, make_dialog, keyring):
    dialog = make_dialog()
    row = dialog.exchange_keys.rows["kraken"]
    qtbot.keyClicks(row.key, KEY)
    assert not dialog.save_button.isEnabled() and "secret too" in row.error.text()
    assert not dialog.save() and keyring.store == {}
    qtbot.keyClicks(row.secret, SECRET)
    assert dialog.save_button.isEnabled() and row.error.text() == ""


def test_clear_deletes_the_stored_pair_at_once(qtbot, make_dialog, keyring):
    keyring.store.update({(SERVICE, "coinbase_api_key"): KEY, (SERVICE, "coinbase_api_secret"): SECRET,
                          (SERVICE, "binance_api_key"): "other", (SERVICE, "binance_api_secret"): "other-s"})
    dialog = make_dialog()
    row = dialog.exchange_keys.rows["coinbase"]
    assert row.source.text() == "stored in the OS keyring"
    row.clear.click()
    assert set(keyring.store) == {(SERVICE, "binance_api_key"), (SERVICE, "binance_api_secret")}
    assert row.source.text().startswith("not set")
    assert dialog.message.text() == "Coinbase keys deleted from the OS keyring."


def test_the_environment_wins_and_the_row_says_so(qtbot, make_dialog, keyring):
    dialog = make_dialog(env={"BINANCE_API_KEY": "env-key", "BINANCE_API_SECRET": "env-secret"})
    row = dialog.exchange_keys.rows["binance"]
    assert row.source.text() == ("from the environment (BINANCE_API_KEY / BINANCE_API_SECRET): it wins over keys "
                                 "saved here")
    qtbot.keyClicks(row.key, KEY)
    qtbot.keyClicks(row.secret, SECRET)
    assert dialog.save()
    assert keyring.store[(SERVICE, "binance_api_key")] == KEY  # stored for when the environment no longer has one
    assert "the ones used" in dialog.message.text()
    assert row.source.text().startswith("from the environment")


def test_without_a_keyring_a_pair_is_kept_for_this_run_only_and_the_trader_is_told(qtbot, tmp_path):
    from keyring.backends import fail

    from app.secrets import forget_memory

    dialog = SettingsDialog(Settings(), tmp_path / "settings.toml", Secrets(env={}, backend=fail.Keyring()))
    qtbot.addWidget(dialog)
    try:
        row = dialog.exchange_keys.rows["kraken"]
        qtbot.keyClicks(row.key, KEY)
        qtbot.keyClicks(row.secret, SECRET)
        assert dialog.save()
        assert "Kraken keys kept in memory only" in dialog.message.text()
        assert row.source.text().startswith("in memory for this run only")
        assert KEY not in (tmp_path / "settings.toml").read_text()
    finally:
        forget_memory()
