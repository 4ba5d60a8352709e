"""Sink role against a scripted engine: credits, acks (R-SINK-ACK), resends and dedup by id."""
import logging

import grpc
import pytest

from keyway_connector import Backoff, IdWindow, Sink
from keyway_connector._proto import pb
from scripted_engine import LIMITS, ScriptedEngine

FAST = Backoff(initial_s=0.01, max_s=0.05)


@pytest.fixture
def engine():
    with ScriptedEngine() as e:
        yield e


def batch(seq, *ids):
    return pb.SinkBatch(sequence=seq, records=[pb.SinkRecord(id=i, value=i.encode()) for i in ids])


def test_grants_credits_writes_acks_and_grants_back(engine):
    written = []
    sink = Sink(engine=engine.address, target="totals", write=lambda b: written.append(
        [r.id for r in b.records]), backoff=FAST).start()
    s = engine.next_session()
    assert s.welcome().target == "totals"
    assert s.recv_kind("credits").records == LIMITS.max_batch_records
    s.send(batch=batch(1, "a", "b"))
    assert s.recv_kind("ack").sequence == 1
    assert s.recv_kind("credits").records == 2
    s.send(batch=batch(2, "c"))
    assert s.recv_kind("ack").sequence == 2
    assert s.recv_kind("credits").records == 1
    assert written == [["a", "b"], ["c"]]
    sink.close()
    assert s.recv() is None


def test_credits_window_is_configurable(engine):
    sink = Sink(engine=engine.address, target="totals", write=lambda b: None, credits_window=500,
                backoff=FAST).start()
    s = engine.next_session()
    s.welcome()
    assert s.recv_kind("credits").records == 500
    sink.close()


def test_a_failed_write_is_not_acked_and_the_resend_is_deduplicated(engine):
    seen = IdWindow(100)
    out = []
    fail = {"once": True}

    def write(b):
        if b.sequence == 2 and fail.pop("once", False):
            raise IOError("downstream unavailable")
        for r in b.records:
            if seen.add(r.id):  # remember an id only once its record is written
                out.append(r.id)

    sink = Sink(engine=engine.address, target="totals", write=write, backoff=FAST).start()
    s1 = engine.next_session()
    s1.welcome()
    s1.recv_kind("credits")
    s1.send(batch=batch(1, "x:1", "x:2"))
    assert s1.recv_kind("ack").sequence == 1
    s1.recv_kind("credits")
    s1.send(batch=batch(2, "x:3", "x:4"))
    assert s1.recv() is None  # the sink abandoned the session without acking 2
    s2 = engine.next_session()
    s2.welcome()
    s2.recv_kind("credits")
    s2.send(batch=batch(2, "x:3", "x:4"))  # resent unchanged
    assert s2.recv_kind("ack").sequence == 2
    s2.recv_kind("credits")
    s2.send(batch=batch(3, "x:1", "x:5"))  # x:1 again, as after an engine replay
    assert s2.recv_kind("ack").sequence == 3
    assert out == ["x:1", "x:2", "x:3", "x:4", "x:5"]
    assert sink.write_failures == 1
    sink.close()


def test_dedup_window_grows_to_cover_the_replay_and_drops_duplicates_before_write(engine, caplog):
    caplog.set_level(logging.INFO, logger="keyway_connector")
    window = IdWindow(10)
    written = []
    sink = Sink(engine=engine.address, target="totals", credits_window=50, dedup=window, backoff=FAST,
                write=lambda b: written.append((b.sequence, [r.id for r in b.records])))
    assert sink.max_replay_records == 0  # nothing advertised before the first Welcome
    sink.start()
    limits = pb.Limits(max_batch_records=50, max_message_bytes=16 << 20, max_replay_records=1000)
    s1 = engine.next_session()
    s1.welcome(limits=limits)
    assert s1.recv_kind("credits").records == 50
    assert sink.max_replay_records == 1000
    assert window.capacity == 1050  # the credits granted plus what a restart may send again
    s1.send(batch=batch(1, "a", "b"))
    assert s1.recv_kind("ack").sequence == 1
    assert s1.recv_kind("credits").records == 2
    s1.send(batch=batch(2, "b", "c"))  # "b" again: dropped, the rest written
    assert s1.recv_kind("ack").sequence == 2
    assert s1.recv_kind("credits").records == 2  # every record received is granted back
    s1.send(batch=batch(3, "a"))  # nothing new: acked without calling write
    assert s1.recv_kind("ack").sequence == 3
    assert s1.recv_kind("credits").records == 1
    s1.end(grpc.StatusCode.UNAVAILABLE, "engine restarting")
    s2 = engine.next_session()
    s2.welcome(limits=limits)
    s2.recv_kind("credits")
    s2.send(batch=batch(1, "a", "d"))  # the restarted engine replays "a"
    assert s2.recv_kind("ack").sequence == 1
    assert written == [(1, ["a", "b"]), (2, ["c"]), (1, ["d"])]
    assert sink.records_written == 4
    grown = [r.getMessage() for r in caplog.records if "dedup window grown" in r.getMessage()]
    assert len(grown) == 1 and "from 10 to 1050" in grown[0]  # the second Welcome needs no growth
    sink.close()


def test_resent_batches_arriving_after_newer_ones_are_acked_per_r_sink_ack(engine):
    order = []
    sink = Sink(engine=engine.address, target="totals", write=lambda b: order.append(b.sequence),
                backoff=FAST).start()
    s = engine.next_session()
    s.welcome()
    s.recv_kind("credits")
    for seq in (6, 7, 3):
        s.send(batch=batch(seq, f"id{seq}"))
    acks = []
    while len(acks) < 3:
        r = s.recv()
        if r.WhichOneof("kind") == "ack":
            acks.append(r.ack.sequence)
    assert order == [6, 7, 3]
    assert acks == [6, 7, 3]
    sink.close()


def test_sink_reconnects_after_the_engine_drops_it(engine):
    sink = Sink(engine=engine.address, target="totals", write=lambda b: None, backoff=FAST).start()
    s1 = engine.next_session()
    s1.welcome()
    s1.end(grpc.StatusCode.UNAVAILABLE, "gone")
    s2 = engine.next_session()
    s2.welcome()
    assert s2.recv_kind("credits").records > 0  # credits never carry over: granted again
    sink.close()
