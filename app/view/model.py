"""ViewModel: every snapshot the window renders, built from a session at the refresh rate, without Qt.

Widgets never walk the session's objects (``desk.broker.orders``, ``desk.books``, ``session.kraken_books``) nor
write its attributes: they render what this class builds and send what the trader asks to the desk's command
methods. The builders are the pure functions of the other modules of this package; this class only knows where
in the session each one's inputs live, and keeps the little state that spans refreshes (the watchlist's first
prices, the blotter's journal history).
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from app.models import FeedState, Fill, Position, Side
from app.view.blotter import BlotterView, DeskBlotter, OrderRow
from app.view.book import BookLadder, BookSource, Tape, book_ladder, kraken_book, tape
from app.view.chart import ChartOrder, chart_orders
from app.view.status import FEED_STYLE, SlowBadge, StatusView, status_view
from app.view.ticket import AccountView, desk_account_view
from app.view.watchlist import PriceMemory, Watchlist, watchlist

if TYPE_CHECKING:
    from app.session import Session


class Touch(NamedTuple):
    """The best bid and ask of a symbol: from its local book when it has a valid one, else the exchange's quote.
    A pair, so ``bid, ask = vm.touch(symbol)`` reads it."""

    bid: Decimal | None
    ask: Decimal | None


class ChartPosition(NamedTuple):
    """What the chart draws of a symbol's position: a copy of it (None when flat), its stop and target, the
    symbol's fills (markers) and the mark price its open PnL is valued at."""

    position: Position | None
    stop: Decimal | None
    target: Decimal | None
    fills: tuple[Fill, ...]
    mark: Decimal | None


class ViewModel:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._prices = PriceMemory()  # the watchlist's "since this session" reference, one per run
        self._blotter: DeskBlotter | None = None  # reads the journal's history once, off the loop, on first use
        # The last snapshot of the book and the tape with what it was made from: at 4 Hz most refreshes of a quiet
        # symbol would build the same one again.
        self._book_memo: tuple[tuple, BookLadder] | None = None
        self._tape_memo: tuple[tuple, Tape] | None = None

    # ----- market ---------------------------------------------------------------------------------------------
    def watchlist(self) -> Watchlist:
        s = self.session
        pending = {p.decision.symbol for p in s.desk.proposals.pending()}
        return watchlist(s.market, s.desk.instruments, memory=self._prices, pending_symbols=pending,
                         stats24h=getattr(s, "ticker24h", None), now_ns=time.perf_counter_ns())

    def book_source(self, symbol: str) -> BookSource | None:
        """Kraken's books live in the checksum guard (the desk's never get its updates); every other exchange's in
        the desk."""
        s = self.session
        return kraken_book(s.kraken_books, symbol) or s.desk.books.get(symbol)

    def book(self, symbol: str, *, depth: int = 20, group: int = 1) -> BookLadder:
        """The ladder; the same snapshot again while the book, the instrument and the request are unchanged."""
        source = self.book_source(symbol)
        inst = self.session.desk.instruments.get(symbol)
        key = (symbol, depth, group, id(source), getattr(source, "version", None), getattr(source, "status", None),
               inst)
        if key[4] is None or self._book_memo is None or self._book_memo[0] != key:
            self._book_memo = (key, book_ladder(source, inst, depth, group=group))
        return self._book_memo[1]

    def tape(self, symbol: str, limit: int = 60) -> Tape:
        """Time and sales; the same snapshot again until the symbol trades (a trade never changes once made)."""
        m = self.session.market[symbol]
        inst = self.session.desk.instruments.get(symbol)
        key = (symbol, limit, m.trades, inst)
        if self._tape_memo is None or self._tape_memo[0] != key:
            self._tape_memo = (key, tape(m.recent, inst, limit, first_seq=m.recent_first_seq))
        return self._tape_memo[1]

    def touch(self, symbol: str) -> Touch:
        book = self.book_source(symbol)
        if book is not None and book.status == "SYNCED":
            bids, asks = book.levels(Side.BUY, 1), book.levels(Side.SELL, 1)
            if bids and asks:
                return Touch(Decimal(str(bids[0][0])), Decimal(str(asks[0][0])))
        q = self.session.market[symbol].quote  # floats on the hot path: money from here on is Decimal
        if q is None or not (q.bid > 0 and q.ask > 0):
            return Touch(None, None)
        return Touch(Decimal(str(q.bid)), Decimal(str(q.ask)))

    # ----- status bar -----------------------------------------------------------------------------------------
    def feed_text(self) -> str:
        """"LIVE", "RECONNECTING (3)", "LIVE · RESYNCING BTCUSDT": the feed and any book being rebuilt."""
        s = self.session
        f = s.feed
        text = FEED_STYLE[f.state][0]
        if f.state is FeedState.RECONNECTING and f.reconnects:
            text = f"{text} ({f.reconnects})"
        resyncing = [sym for sym, b in s.desk.books.items() if b.status == "RESYNCING"]
        resyncing += sorted(s.kraken_books.resyncing) if s.kraken_books is not None else []
        if f.state is FeedState.LIVE and resyncing:
            text = f"{text} · RESYNCING {', '.join(resyncing)}"
        return text

    def status(self, symbol: str, rate: float, *, slow: SlowBadge | None = None, account: bool = True) -> StatusView:
        """The status bar for ``symbol`` now; ``account=False`` leaves out risk and money (before the panels exist,
        the desk may still be restoring)."""
        s = self.session
        desk, f = s.desk, s.feed
        m = s.market[symbol]
        bid, ask = self.touch(symbol)  # the same touch as the order book and the ticket, never a second source
        fault = s.supervisor.status()
        pf = desk.portfolio
        return status_view(
            symbol=symbol, last=m.last_trade.price if m.last_trade is not None else None,
            bid=bid, ask=ask, fmt_price=desk.instruments.get(symbol).fmt_price,  # XRP at 0.6012, not 0.60
            feed_text=self.feed_text(), feed_level=FEED_STYLE[f.state][1], feed_tooltip=f.last_error or "",
            rate=rate, risk=desk.risk.state.value if account else None, equity=pf.equity() if account else None,
            day_pnl=pf.day_pnl(desk.now_ms()) if account else None,
            fault=None if fault is None else (fault.text, fault.level, fault.tooltip),
            slow=slow, pending=len(desk.proposals.pending()))

    # ----- trading --------------------------------------------------------------------------------------------
    def account(self, symbol: str) -> AccountView:
        return desk_account_view(self.session.desk, symbol)

    def blotter(self) -> BlotterView:
        if self._blotter is None:
            self._blotter = DeskBlotter.start(self.session.desk)  # the journal's history read in a thread
        return self._blotter.snapshot()

    def working_orders(self, symbol: str) -> tuple[OrderRow, ...]:
        """The symbol's working orders as the blotter shows them."""
        return tuple(r for r in self.blotter().working if r.symbol == symbol)

    def chart_orders(self, symbol: str) -> tuple[ChartOrder, ...]:
        """The lines the chart draws for the symbol's working orders (bracket legs are the position's SL / TP)."""
        desk = self.session.desk
        return tuple(chart_orders(desk.broker.open_orders(symbol), desk.instruments.get(symbol)))

    def chart_position(self, symbol: str) -> ChartPosition:
        desk = self.session.desk
        pos = desk.portfolio.position(symbol)
        stop, target = desk.bracket_levels(symbol)
        return ChartPosition(dataclasses.replace(pos) if pos is not None and pos.qty != 0 else None, stop, target,
                             tuple(f for f in desk.fills if f.symbol == symbol), desk.portfolio.mark_price(symbol))
