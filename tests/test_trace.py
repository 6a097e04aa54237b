"""Lot traceability kept bounded: lots no tank holds any more leave the station's memory after a while."""

from __future__ import annotations

from twin.trace import EARLIER, LotBook

T0 = 1_780_243_200.0  # 2026-06-01 00:00 Beijing
DAY = 86_400.0


def test_emptied_lots_are_retired_after_the_window_and_the_rest_stay() -> None:
    book = LotBook("S1", ["T1"])
    names = []
    for k in range(12):  # a 20,000 L drop every 5 days into 5,000 L left; sales in between
        start = T0 + k * 5 * DAY
        names.append(book.receive("T1", start, start + 1800, 20_000.0, 5_000.0))
        book.draw("T1", start + 2 * DAY, 15_000.0)
    comp = book.tanks["T1"].comp
    held = {k for k in comp if k != EARLIER}
    assert len(held) >= 2 and held < set(names)  # the last drops still make up the tank
    book.take_dirty()  # written to the store
    cutoff = T0 + 55 * DAY - 45 * DAY  # the last receipt's time less the paper trail's window
    gone = book.retire(cutoff)
    assert gone and all(book.lots.get(k) is None for k in gone)
    for k in names:
        info_end = T0 + names.index(k) * 5 * DAY + 1800
        expected_gone = k not in held and info_end < cutoff
        assert (k in gone) == expected_gone, k
    assert "S1/T1/opening" in book.lots  # the tank's opening stock is never retired
    # Sales keep landing on the lots the tank holds.
    book.draw("T1", T0 + 56 * DAY, 1_000.0)
    assert {r["lot"] for r in book.take_dirty()} == held


def test_a_lot_with_unwritten_changes_waits() -> None:
    book = LotBook("S1", ["T1"])
    first = book.receive("T1", T0, T0 + 1800, 20_000.0, 0.0)
    later = [book.receive("T1", T0 + k * DAY, T0 + k * DAY + 1800, 30_000.0, 10.0)  # onto 10 L: each
             for k in range(1, 4)]                                              # drop folds the earlier
    assert first not in book.tanks["T1"].comp and book.lots[first]["share_now"] == 0.0
    assert book.retire(T0 + 10 * DAY) == []  # their share changes are not written yet
    book.take_dirty()
    assert sorted(book.retire(T0 + 10 * DAY)) == sorted([first, *later[:-1]])
    assert set(book.lots) == {"S1/T1/opening", later[-1]}
