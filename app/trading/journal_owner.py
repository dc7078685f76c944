"""Whose journal is this? A journal restores cash and positions, so it belongs to one account: paper, or one
exchange account on one network. Its stamp (journal v5, ``Journal.account_stamp``) says which; a journal made
before v5 has none and was a paper journal (live trading did not exist then).

- A paper session stamps PAPER on an unstamped journal and refuses a journal stamped LIVE.
- A live session takes a journal stamped for its own account, or an unstamped empty one (and stamps it); anything
  else (a paper journal given with ``--journal``, another exchange, network or account) keeps it in paper.
- The built-in exchange opens a new account each run: its previous live journal is set aside, so any built-in
  stamp is taken (the file is replaced before the session reads it).

Each refusal is one sentence for the trader."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.trading.journal import AccountStamp, Journal, JournalError

if TYPE_CHECKING:
    from pathlib import Path

    from app.trading.live_broker import LiveAccount

PAPER = AccountStamp("PAPER", None, None, None)


def live_stamp(account: LiveAccount) -> AccountStamp:
    return AccountStamp("LIVE", account.exchange, bool(account.testnet), account.account)


def describe(stamp: AccountStamp | None) -> str:
    """"paper trading", "the Binance testnet account AbC1…x9Yz", "the built-in exchange's account …"."""
    if stamp is None or stamp.mode == "PAPER":
        return "paper trading"
    from app.trading.live_start import mode_words

    where = mode_words(stamp.exchange or "?", bool(stamp.testnet))
    owner = f"{where}'s" if where.startswith("the ") else f"the {where}"  # "the built-in exchange's account"
    return f"{owner} account {stamp.account}" if stamp.account else f"{owner} account"


def _empty(journal: Journal) -> bool:
    return not journal.recent_orders(1) and not journal.recent_fills(1)


def live_refusal(path: Path, wanted: AccountStamp, *, fresh: bool = False) -> str | None:
    """Why the journal at ``path`` cannot be the live session's for ``wanted`` (None: it can). ``fresh``: it is
    set aside before the session opens it (the built-in exchange's new account each run), so a built-in stamp of
    an earlier run is fine. Opening the file migrates it like any session would; nothing else is written."""
    if not path.exists():
        return None
    try:
        journal = Journal(path)
    except JournalError as exc:
        return f"The journal {path.name} cannot be used: {exc}"
    try:
        stamp = journal.account_stamp()
        if stamp is None:
            if _empty(journal):
                return None
            return (f"The journal {path.name} is a paper journal (it has orders and fills and no live account): a "
                    f"live session keeps its own journal, so leave out --journal or name a new file.")
        if stamp == wanted or (fresh and stamp.mode == "LIVE" and stamp.exchange == wanted.exchange):
            return None
        return (f"The journal {path.name} belongs to {describe(stamp)}, not to {describe(wanted)}: its cash and "
                f"positions are not this account's, so leave out --journal or name a new file.")
    finally:
        journal.close()


def claim(journal: Journal, stamp: AccountStamp) -> None:
    """At session start: stamp an unstamped journal for ``stamp``'s account, or raise JournalError (one sentence)
    if it belongs to another. A paper session on a live journal ends here (the terminal exits with the sentence);
    a live session was checked by ``live_refusal`` already, so this only guards against the file changing since."""
    have = journal.account_stamp()
    if have is None:
        if stamp.mode == "LIVE" and not _empty(journal):
            raise JournalError(f"The journal {journal.path.name} is a paper journal; a live session keeps its own.")
        journal.stamp_account(stamp)
        return
    if have == stamp:
        return
    if stamp.mode == "PAPER":
        raise JournalError(f"The journal {journal.path.name} belongs to {describe(have)}: a paper session never "
                           f"trades on a live account's journal (name another with --journal).")
    raise JournalError(f"The journal {journal.path.name} belongs to {describe(have)}, not to {describe(stamp)}.")
