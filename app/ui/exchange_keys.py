"""The settings dialog's exchange keys: an API key and secret per exchange (Binance, Coinbase, Kraken), masked,
stored in the OS keyring through ``app.secrets`` (memory for this run when there is no keyring), never in the
settings file. A pair is stored when the dialog saves; both halves or neither (half a pair is an error beside it).
Clear deletes the stored pair at once. Beside each pair: where the keys in use come from; an environment variable
wins over anything stored here, and the row says so.
"""

from __future__ import annotations

from typing import Any

from PySide6 import QtCore, QtWidgets

from app.secrets import LIVE_EXCHANGES, exchange_key_names

NAMES = {"binance": "Binance", "coinbase": "Coinbase", "kraken": "Kraken"}
FIELD_MIN_WIDTH = 150


def env_names(exchange: str) -> str:
    return f"{exchange.upper()}_API_KEY / {exchange.upper()}_API_SECRET"


def exchange_keys_text(secrets: Any, exchange: str) -> str:
    """Where an exchange's API key and secret come from, in words; never the values."""
    key_name, secret_name = exchange_key_names(exchange)
    env = env_names(exchange)
    if secrets is None:
        return f"from {env} or the OS keyring"
    sources = {secrets.source(key_name), secrets.source(secret_name)}
    if "env" in sources:
        return f"from the environment ({env}): it wins over keys saved here"
    if None in sources:
        return (f"not set: enter them here (OS keyring), or set {env} in the environment")
    if sources == {"keyring"}:
        return "stored in the OS keyring"
    return "in memory for this run only (no OS keyring): gone when the terminal exits"


class ExchangeKeyRow:
    """One exchange's key and secret fields, Clear button, source and error labels."""

    def __init__(self, exchange: str, secrets: Any, on_edit: Any, on_clear: Any) -> None:
        self.exchange = exchange
        self.key = self._field(f"{NAMES[exchange]} API key", f"exchangeKey_{exchange}", secrets, on_edit)
        self.secret = self._field(f"{NAMES[exchange]} API secret", f"exchangeSecret_{exchange}", secrets, on_edit)
        self.clear = QtWidgets.QPushButton("Clear")
        self.clear.setObjectName(f"clearExchangeKeys_{exchange}")
        self.clear.setToolTip(f"Delete the {NAMES[exchange]} key and secret stored in the OS keyring (not the "
                              "environment's)")
        self.clear.setEnabled(secrets is not None)
        self.clear.clicked.connect(lambda: on_clear(exchange))
        self.source = QtWidgets.QLabel(exchange_keys_text(secrets, exchange))
        self.source.setObjectName("cardMuted")
        self.source.setWordWrap(True)
        self.error = QtWidgets.QLabel("")
        self.error.setObjectName("formError")
        self.error.setWordWrap(True)
        self.error.setTextFormat(QtCore.Qt.TextFormat.PlainText)
        self.error.setProperty("level", "ok")

    @staticmethod
    def _field(placeholder: str, name: str, secrets: Any, on_edit: Any) -> QtWidgets.QLineEdit:
        line = QtWidgets.QLineEdit()
        line.setEchoMode(QtWidgets.QLineEdit.EchoMode.Password)  # never on screen
        line.setObjectName(name)
        line.setPlaceholderText(placeholder)
        line.setMinimumWidth(FIELD_MIN_WIDTH)
        line.setEnabled(secrets is not None)
        line.textChanged.connect(on_edit)
        return line

    def typed(self) -> tuple[str, str]:
        return self.key.text().strip(), self.secret.text().strip()

    def problem(self) -> str | None:
        key, secret = self.typed()
        if bool(key) != bool(secret):
            return f"enter the {'secret' if key else 'key'} too: a key and its secret are stored together"
        return None


class ExchangeKeys:
    """The rows of every exchange, added to ``grid``; ``on_edit`` runs after each keystroke (the dialog validates),
    ``say(text, ok)`` shows what Clear did."""

    def __init__(self, grid: QtWidgets.QGridLayout, secrets: Any, on_edit: Any, say: Any) -> None:
        self.secrets = secrets
        self._say = say
        self.rows: dict[str, ExchangeKeyRow] = {}
        for exchange in LIVE_EXCHANGES:
            row = ExchangeKeyRow(exchange, secrets, on_edit, self.clear)
            pair = QtWidgets.QWidget()
            box = QtWidgets.QHBoxLayout(pair)
            box.setContentsMargins(0, 0, 0, 0)
            box.setSpacing(4)
            box.addWidget(row.key, 1)
            box.addWidget(row.secret, 1)
            box.addWidget(row.clear)
            at = grid.rowCount()
            grid.addWidget(QtWidgets.QLabel(f"{NAMES[exchange]} keys"), at, 0)
            grid.addWidget(pair, at, 1)
            grid.addWidget(row.error, at, 2)
            grid.addWidget(row.source, at + 1, 1, 1, 2)
            self.rows[exchange] = row

    @property
    def source_labels(self) -> dict[str, QtWidgets.QLabel]:
        return {exchange: row.source for exchange, row in self.rows.items()}

    def problems(self) -> dict[str, str]:
        """Half a pair typed, per exchange (shown beside it; the dialog does not save)."""
        found = {}
        for exchange, row in self.rows.items():
            problem = row.problem()
            row.error.setText(problem or "")
            level = "bad" if problem else "ok"
            if row.error.property("level") != level:
                row.error.setProperty("level", level)
                row.error.style().unpolish(row.error)
                row.error.style().polish(row.error)
            if problem:
                found[exchange] = problem
        return found

    def pending(self) -> list[str]:
        """What the dialog's summary lists as changed: the exchanges with a whole pair typed."""
        return [f"{NAMES[ex]} keys" for ex, row in self.rows.items() if all(row.typed())]

    def store(self) -> list[str]:
        """Store every whole pair typed (the fields are emptied); one note each for the trader."""
        notes: list[str] = []
        if self.secrets is None:
            return notes
        for exchange, row in self.rows.items():
            key, secret = row.typed()
            if not (key and secret):
                continue
            key_name, secret_name = exchange_key_names(exchange)
            name = NAMES[exchange]
            try:
                where = self.secrets.set(key_name, key)
                self.secrets.set(secret_name, secret)
            except Exception as exc:  # a keyring failure must not lose the rest of the save
                notes.append(f"the {name} keys could not be stored ({type(exc).__name__})")
                continue
            row.key.clear()
            row.secret.clear()
            row.source.setText(exchange_keys_text(self.secrets, exchange))
            if "env" in (self.secrets.source(key_name), self.secrets.source(secret_name)):
                notes.append(f"{name} keys stored, but {env_names(exchange)} in the environment are the ones used")
            elif where == "keyring":
                notes.append(f"{name} keys stored in the OS keyring: live trading uses them from the next start")
            else:
                notes.append(f"{name} keys kept in memory only (no OS keyring): a restart forgets them; set "
                             f"{env_names(exchange)} to keep keys across runs")
        return notes

    def clear(self, exchange: str) -> None:
        """Delete the stored pair now (the keyring's, or this run's memory); the environment's stay."""
        row, name = self.rows[exchange], NAMES[exchange]
        row.key.clear()
        row.secret.clear()
        if self.secrets is None:
            return
        try:
            for secret_name in exchange_key_names(exchange):
                self.secrets.set(secret_name, "")
        except Exception as exc:
            self._say(f"The {name} keys could not be deleted ({type(exc).__name__}).", False)
            return
        row.source.setText(exchange_keys_text(self.secrets, exchange))
        key_name, secret_name = exchange_key_names(exchange)
        if "env" in (self.secrets.source(key_name), self.secrets.source(secret_name)):
            self._say(f"{name} keys deleted from the OS keyring; {env_names(exchange)} in the environment still "
                      "apply.", True)
        else:
            self._say(f"{name} keys deleted from the OS keyring.", True)
