"""Backoff, IdWindow and AckTracker: the small pieces with rules of their own."""
import pytest

from keyway_connector import Backoff, IdWindow
from keyway_connector.ack_tracker import AckTracker


def test_backoff_ceiling_doubles_from_100ms_to_a_5s_cap():
    b = Backoff()
    assert [b.ceiling_s(n) for n in range(1, 9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert b.ceiling_s(10_000) == 5.0  # a long outage never overflows


def test_backoff_full_jitter_spans_zero_to_the_ceiling():
    assert Backoff(random=lambda: 0.0).delay_s(3) == 0.0
    assert Backoff(random=lambda: 0.999).delay_s(3) == pytest.approx(0.3996)
    draws = [Backoff().delay_s(4) for _ in range(1000)]
    assert all(0 <= d < 0.8 for d in draws)
    assert len(set(draws)) > 900  # jittered, not a fixed step


@pytest.mark.parametrize("kw", [dict(initial_s=0), dict(initial_s=2, max_s=1), dict(multiplier=0.5),
                                dict(reset_after_s=0)])
def test_backoff_rejects_nonsense(kw):
    with pytest.raises(ValueError):
        Backoff(**kw)


def test_id_window_drops_ids_it_remembers_and_forgets_the_oldest():
    w = IdWindow(3)
    assert [w.add(i) for i in ["a", "b", "a", "c", "d"]] == [True, True, False, True, True]
    assert "a" not in w and "b" in w and len(w) == 3
    assert w.add("a") is True  # forgotten, so new again
    with pytest.raises(ValueError):
        IdWindow(0)


def test_id_window_grow_keeps_the_ids_in_order_and_raises_the_capacity():
    w = IdWindow(3)
    for i in ["a", "b", "c"]:
        w.add(i)
    w.grow(5)
    assert w.capacity == 5 and len(w) == 3 and all(i in w for i in "abc")
    assert [w.add(i) for i in ["d", "e"]] == [True, True]  # room for two more: nothing forgotten
    assert "a" in w
    w.add("f")  # full at 5: the oldest, "a", goes first
    assert "a" not in w and "b" in w and len(w) == 5


def test_id_window_grow_to_a_smaller_or_equal_capacity_changes_nothing():
    w = IdWindow(3)
    for i in ["a", "b", "c"]:
        w.add(i)
    w.grow(2)
    w.grow(3)
    assert w.capacity == 3 and len(w) == 3
    w.add("d")
    assert "a" not in w and all(i in w for i in "bcd")


def test_ack_tracker_in_order():
    t = AckTracker()
    t.received(1)
    t.received(2)
    assert t.written(1) == 1
    assert t.written(2) == 2
    assert t.unacked == 0


def test_ack_tracker_waits_for_an_older_resent_batch():
    # R-SINK-ACK's example: 6 and 7 arrive, then 3 is resent from a lost session.
    t = AckTracker()
    for seq in (6, 7, 3):
        t.received(seq)
    assert t.written(7) is None  # 6 is not written yet
    assert t.written(6) is None  # 3 (received, lower) is not written yet
    assert t.written(3) == 7  # everything up to 7 is written: one cumulative ack
    assert t.unacked == 0


def test_ack_tracker_acks_a_late_lower_batch_by_its_own_sequence():
    t = AckTracker()
    t.received(6)
    assert t.written(6) == 6
    t.received(3)
    assert t.written(3) == 3
