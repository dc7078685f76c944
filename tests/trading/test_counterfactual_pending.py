"""The counterfactual report on a real journal file, at a stated time: a proposal whose horizon has not passed yet is
not scored at the price of the moment (the walkthrough saw it labelled HORIZON); it reads "pending (horizon in N
min)" and is left out of every total until its horizon has passed."""

from __future__ import annotations

from decimal import Decimal

from app.market.instruments import Instrument, Instruments
from app.trading.counterfactual import counterfactual_report
from app.trading.journal import Exit
from app.ui.reports import format_report, local_time
from tests.trading.test_counterfactual_close import MIN, T0, T1, journal, price_path  # noqa: F401 (the fixture)

D = Decimal


def test_a_proposal_whose_horizon_has_not_passed_is_pending_and_out_of_the_totals(journal):  # noqa: F811
    now = T1 + 5 * MIN  # C2 (the approved CLOSE at T1) has 10 of its 15 minutes to go; the rest are over
    rep = counterfactual_report(journal, price_path, equity=D("10000"), horizon_ms=15 * MIN, now_ms=now)
    rows = {r.proposal_id: r for r in rep.rows}
    c2 = rows["C2"]
    assert c2.exit == Exit.PENDING and c2.exit_price is None and c2.sim_pnl is None and c2.actual_pnl is None
    assert rows["C1"].exit == Exit.HORIZON and rows["C1"].sim_pnl == D("90.00")  # over: scored as before
    r1 = rows["R1"].sim_pnl
    assert rep.taken_pnl == 0 and rep.taken_sim_pnl == 0, "a pending proposal counted in the totals"
    assert rep.model_pnl == D("90.00") + r1 and rep.rejected_pnl == D("90.00") + r1
    assert rep.override_value == -(D("90.00") + r1)
    assert rep.no_data == 1 and rep.pending == 1  # C3 has nothing to close; C2 waits
    text = format_report(rep, instruments=Instruments.of(Instrument.from_steps("BTCUSDT", D("0.01"), D("0.00001"))))
    line = next(x for x in text.splitlines() if x.startswith(local_time(T1)))
    assert "pending (horizon in 10 min)" in line and "HORIZON" not in line and "-51.60" not in line
    assert "1 proposal whose horizon has not passed" in text


def test_once_its_horizon_has_passed_it_is_scored(journal):  # noqa: F811
    rep = counterfactual_report(journal, price_path, equity=D("10000"), horizon_ms=15 * MIN, now_ms=T1 + 15 * MIN)
    c2 = next(r for r in rep.rows if r.proposal_id == "C2")
    assert c2.exit == Exit.HORIZON and c2.sim_pnl == D("-50.00") and rep.pending == 0
    assert rep.taken_pnl == D("-51.60")


def test_a_buy_still_inside_its_horizon_is_pending_in_the_journals_report(journal):  # noqa: F811
    rep = journal.counterfactual_report(price_path, equity=D("10000"), horizon_ms=15 * MIN, now_ms=T0 + 3 * MIN)
    (r1,) = rep.rows
    assert r1.exit == Exit.PENDING and r1.sim_pnl is None and rep.model_pnl == 0 and rep.pending == 1
