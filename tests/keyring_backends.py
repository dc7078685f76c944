"""Keyring backends for tests: set with ``keyring.set_keyring(...)`` in-process, or named in the environment
(``PYTHON_KEYRING_BACKEND=tests.keyring_backends.RaisingKeyring``) for a terminal run as a subprocess."""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    """A working keyring that forgets everything when the object goes."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


class RaisingKeyring(KeyringBackend):
    """A keyring whose every operation fails, as a locked or broken OS keyring does. The message of a failed
    ``set_password`` repeats the value, as a careless backend might: it must not reach the trader or the log."""

    priority = 1

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError("the keyring daemon is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringError(f"cannot store {password!r}: the keyring daemon is locked")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringError("the keyring daemon is locked")
