"""The counterfactual report on a real journal file: CLOSE proposals are scored (what closing then would have saved or
cost against holding to the horizon), every row names its symbol and time, and the text says which prices it scores
against."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.llm.schema import Action
from app.market.features import PositionState
from app.market.instruments import Instrument, Instruments
from app.models import OrderOrigin, Side
from app.trading.counterfactual import counterfactual_report
from app.trading.journal import Exit, Journal
from app.ui.reports import format_report, local_time
from tests.trading.test_journal import fill, make_decision, make_state, order

T0 = 1_700_000_000_000
T1 = T0 + 3_600_000
MIN = 60_000
D = Decimal
PATHS = {
    "BTCUSDT": [
        # after the rejected CLOSE at T0 (60000): down to 59100 by the horizon; closing then would have saved 90
        (T0 + MIN, 59_800.0), (T0 + 10 * MIN, 59_300.0), (T0 + 15 * MIN, 59_100.0), (T0 + 16 * MIN, 10.0),
        # after the approved CLOSE at T1 (60000): up to 60500; closing cost 50 as proposed, 51.60 as filled
        (T1 + MIN, 60_100.0), (T1 + 14 * MIN, 60_500.0),
    ],
    "ETHUSDT": [(T0 + MIN, 2_000.0)],
}


def price_path(symbol: str, start_ms: int, end_ms: int) -> list[tuple[int, float]]:
    return [(ms, p) for ms, p in PATHS.get(symbol, []) if start_ms <= ms <= end_ms]


def close_decision(symbol: str = "BTCUSDT", ms: int = T0):
    return make_decision(Action.CLOSE, symbol=symbol, ms=ms, size_pct=0.0, sl=None, tp=None)


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(tmp_path / "journal.sqlite3")
    # a long of 0.1 BTC bought by hand before the proposals
    j.record_order(order("M1", Side.BUY, "0.1", created_ms=T0 - 10 * MIN))
    j.record_fill(fill("FM", "M1", Side.BUY, "0.1", "59000", "5.9", ms=T0 - 10 * MIN))
    j.record_proposal("C1", close_decision(), make_state(ms=T0, position=PositionState.LONG), T0 + 1, T0 + 30_001)
    j.record_review("C1", "REJECTED", T0 + 5_000)
    j.record_proposal("C2", close_decision(ms=T1), make_state(ms=T1, position=PositionState.LONG), T1 + 1,
                      T1 + 30_001)
    j.record_review("C2", "APPROVED", T1 + 2_000)
    j.record_order(order("O9", Side.SELL, "0.1", origin=OrderOrigin.MODEL, proposal_id="C2", created_ms=T1 + 2_001,
                         reduce_only=True))
    j.record_fill(fill("F9", "O9", Side.SELL, "0.1", "59990", "0.6", ms=T1 + 2_050))
    # nothing to close: no ETH was ever bought
    j.record_proposal("C3", close_decision("ETHUSDT"), make_state("ETHUSDT", 2_000.0, position=PositionState.LONG),
                      T0 + 2, T0 + 30_002)
    j.record_review("C3", "EXPIRED", T0 + 30_002)
    # a BUY the report already scored keeps its score
    j.record_proposal("R1", make_decision(ms=T0), make_state(ms=T0), T0 + 3, T0 + 30_003)
    j.record_review("R1", "REJECTED", T0 + 4_000)
    j.record_balance(T1, D("4000"), D("10000"), {})
    yield j
    j.close()


def test_close_proposals_are_scored_as_what_closing_then_saved_or_cost(journal):
    rep = counterfactual_report(journal, price_path, equity=D("10000"), horizon_ms=15 * MIN)
    rows = {r.proposal_id: r for r in rep.rows}
    assert [r.proposal_id for r in rep.rows] == ["C1", "C3", "R1", "C2"]  # oldest first, by the proposal's time
    c1, c2, c3 = rows["C1"], rows["C2"], rows["C3"]
    assert (c1.symbol, c1.action, c1.kind, c1.entry_ms) == ("BTCUSDT", "CLOSE", "REJECTED", T0)
    assert (c1.entry_price, c1.exit_price, c1.exit, c1.exit_ms) == (D("60000.0"), D("59100.0"), Exit.HORIZON,
                                                                    T0 + 15 * MIN)
    assert c1.notional == D("6000.00")  # the position closed, 0.1 at the entry price
    assert c1.sim_pnl == D("90.00") and c1.actual_pnl is None  # closing would have saved 90; the trader held
    assert c2.sim_pnl == D("-50.00")  # closing as proposed cost 50 against holding
    assert c2.actual_pnl == D("-51.60") and c2.actual_fees == D("0.6")  # as filled (59990), after its fee
    assert c3.sim_pnl is None and c3.exit == Exit.NO_DATA  # no position to close: left out, counted
    # the BUY rows are the journal's own, unchanged
    assert rows["R1"] == next(r for r in journal.counterfactual_report(
        price_path, equity=D("10000"), horizon_ms=15 * MIN).rows if r.proposal_id == "R1")
    r1 = rows["R1"].sim_pnl
    assert rep.rejected_pnl == D("90.00") + r1 and rep.expired_pnl == 0
    assert rep.taken_pnl == D("-51.60") and rep.taken_sim_pnl == D("-50.00")
    assert rep.model_pnl == D("90.00") + D("-50.00") + r1
    assert rep.override_value == (0 - D("90.00")) + (D("-51.60") - D("-50.00")) + (0 - r1)
    assert rep.no_data == 1


def test_the_text_names_symbol_and_time_and_the_prices_it_scores_against(journal):
    rep = counterfactual_report(journal, price_path, equity=D("10000"), horizon_ms=15 * MIN)
    instruments = Instruments.of(Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001")))
    text = format_report(rep, instruments=instruments, prices="the 1 m candles this terminal holds")
    lines = text.splitlines()
    c1 = next(line for line in lines if line.startswith(local_time(T0)) and "CLOSE" in line and "REJECTED" in line)
    assert "BTCUSDT" in c1 and "60,000.00" in c1 and "59,100.00" in c1 and "+90.00" in c1
    c2 = next(line for line in lines if line.startswith(local_time(T1)))
    assert "CLOSE" in c2 and "APPROVED" in c2 and "-50.00" in c2 and "-51.60" in c2
    assert "ETHUSDT" in next(line for line in lines if "EXPIRED" in line)
    assert "the 1 m candles this terminal holds" in text  # which prices it scores against
    assert "CLOSE" in text and "saved" in text  # how a CLOSE is scored, in words
    assert "nothing to close" in text  # why C3 has no score


def test_many_closes_over_many_fills_are_scored_in_one_pass_over_a_bounded_read(tmp_path: Path, monkeypatch):
    """Each CLOSE is scored with the position held when it was made: 60 closes over 300 fills replay the fills once
    (not once per close), from a bounded read of the journal (never every fill it holds)."""
    import app.trading.counterfactual as cf

    j = Journal(tmp_path / "journal.sqlite3")
    try:
        for k in range(300):  # a buy of 0.01 BTC every minute: 0.01 * (k + 1) held after the k-th
            ms = T0 + k * MIN
            j.record_order(order(f"M{k}", Side.BUY, "0.01", created_ms=ms))
            j.record_fill(fill(f"F{k}", f"M{k}", Side.BUY, "0.01", "60000", "0", ms=ms))
        closes = {}
        for n in range(60):  # a rejected CLOSE half a minute after every fifth buy
            k = 5 * n
            ms = T0 + k * MIN + 30_000
            j.record_proposal(f"C{n}", close_decision(ms=ms), make_state(ms=ms, position=PositionState.LONG), ms,
                              ms + 30_000)
            j.record_review(f"C{n}", "REJECTED", ms + 1_000)
            closes[f"C{n}"] = D("0.01") * (k + 1)
        replayed = []
        real_apply = cf.apply_to_position
        monkeypatch.setattr(cf, "apply_to_position", lambda p, f: (replayed.append(f.id), real_apply(p, f))[1])

        def every_fill():
            raise AssertionError("every fill the journal holds was read")

        monkeypatch.setattr(j, "all_fills", every_fill)
        path = lambda s, a, b: [(a + 15 * MIN, 60_100.0)]  # noqa: E731
        rep = cf.counterfactual_report(j, path, equity=D("10000"), horizon_ms=15 * MIN)
    finally:
        j.close()
    got = {r.proposal_id: r.open_qty for r in rep.rows if r.action == "CLOSE"}
    assert got == closes  # the position each close would have closed
    assert all(rep_row.sim_pnl == closes[rep_row.proposal_id] * D("-100.0") for rep_row in rep.rows)
    assert len(replayed) <= 300, f"{len(replayed)} fill replays for 300 fills"


def test_the_report_adds_its_totals_by_the_journals_own_rule():
    """One rule, one place: the CLOSE report's totals are the journal's, not a copy that can drift from it."""
    import app.trading.counterfactual as cf
    import app.trading.journal as journal_module

    assert cf.totals is journal_module.report_totals
