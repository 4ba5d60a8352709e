"""Failover across a cluster's workers (docs/protocol.md §13.4, R-FAILOVER): the addresses learned
from each Welcome, and the round-robin over them when the worker is unreachable, against scripted
engines on real sockets."""
from __future__ import annotations

import time

import grpc
import pytest

from keyway_connector import Backoff, ConnectOptions, Source, describe
from keyway_connector._proto import pb
from keyway_connector.addresses import known_addresses, learn_addresses, next_address, parse_engines
from scripted_engine import ScriptedEngine
from test_source import free_port

#: A session counts as healthy after 50 ms, so a test need not wait 5 s for a failover to be the first.
QUICK_HEALTH = Backoff(reset_after_s=0.05)


def make_source(engine: str, **kw):
    kw.setdefault("backoff", QUICK_HEALTH)
    return Source(engine=engine, target="payments", streams=["q"], instance_id="i-1", **kw)


def test_engine_takes_one_address_or_several_separated_by_commas():
    assert parse_engines("127.0.0.1:7700") == ("127.0.0.1:7700",)
    assert parse_engines("w1:7700, w2:7700,w3:7701") == ("w1:7700", "w2:7700", "w3:7701")
    for bad in ("", ",", "nowhere", "w1:7700,nowhere"):
        with pytest.raises(ValueError):
            parse_engines(bad)
    assert ConnectOptions(target="t", connector_name="c", engine="w1:1, w2:2").resolved().engine == "w1:1,w2:2"
    with pytest.raises(ValueError, match="several separated by commas"):
        ConnectOptions(target="t", connector_name="c", engine="w1:1,nowhere").resolved()


def test_learns_the_latest_list_and_goes_round_each_known_address_once():
    assert learn_addresses((), ["a:1", "b:2"]) == ("a:1", "b:2")
    assert learn_addresses(("a:1",), []) == ("a:1",)
    assert learn_addresses(("a:1",), ["", "garbage"]) == ("a:1",)
    known = known_addresses(["a:1", "b:2"], ["b:2", "c:3", "a:1"])
    assert known == ("a:1", "b:2", "c:3")
    assert [next_address(known, a) for a in known] == ["b:2", "c:3", "a:1"]
    assert next_address(known, "z:9") == "a:1"


def test_dials_the_next_address_the_welcome_listed_at_once_when_its_worker_dies():
    with ScriptedEngine() as b:
        a = ScriptedEngine()
        src = make_source(a.address).start()
        try:
            s1 = a.next_session()
            s1.welcome(initial_credits=1, cluster_addresses=[a.address, b.address])
            time.sleep(0.1)
            died = time.monotonic()
            a.stop()
            s2 = b.next_session()
            hello = s2.welcome(initial_credits=1)
            # The first failover after a healthy session waits at most the first delay (100 ms).
            assert time.monotonic() - died < 1.0
            assert (hello.instance_id, hello.target) == ("i-1", "payments")
        finally:
            src.close()


def test_tries_every_known_worker_in_turn_configured_ones_first():
    with ScriptedEngine() as a, ScriptedEngine() as b, ScriptedEngine() as c:
        dead = f"127.0.0.1:{free_port()}"
        src = make_source(f"{dead},{a.address}").start()
        try:
            s1 = a.next_session()
            s1.welcome(initial_credits=1, cluster_addresses=[a.address, b.address, c.address])
            time.sleep(0.1)
            s1.end(grpc.StatusCode.UNAVAILABLE, "worker killed")
            at_b = b.next_session()
            at_b.recv_kind("hello")
            at_b.fail(pb.ERROR_CODE_SHUTTING_DOWN, grpc.StatusCode.UNAVAILABLE)
            at_c = c.next_session()
            at_c.welcome(initial_credits=1)
            # c listed nothing: the connector still knows the dead address, a and b, in that order.
            at_c.end(grpc.StatusCode.UNAVAILABLE, "worker killed")
            a.next_session().welcome(initial_credits=1)
            assert len(b.all_sessions) == 1
        finally:
            src.close()


def test_stays_with_a_live_worker_that_answers_with_another_error():
    with ScriptedEngine() as a, ScriptedEngine() as b:
        src = make_source(a.address).start()
        try:
            s1 = a.next_session()
            s1.welcome(initial_credits=1, cluster_addresses=[a.address, b.address])
            s1.fail(pb.ERROR_CODE_STREAM_BUSY, grpc.StatusCode.ALREADY_EXISTS)
            a.next_session().welcome(initial_credits=1)
            assert b.all_sessions == []
        finally:
            src.close()


def test_backs_off_between_rounds_when_every_worker_is_down():
    with ScriptedEngine() as a, ScriptedEngine() as b:
        src = make_source(a.address, backoff=Backoff(reset_after_s=5.0)).start()
        try:
            a.next_session().welcome(initial_credits=1, cluster_addresses=[a.address, b.address])
            deadline = time.monotonic() + 2.0
            refused = {a.address: 0, b.address: 0}
            current = a.all_sessions[0]
            current.fail(pb.ERROR_CODE_SHUTTING_DOWN, grpc.StatusCode.UNAVAILABLE)
            while time.monotonic() < deadline:
                for engine in (a, b):
                    try:
                        s = engine.next_session(timeout=0.01)
                    except Exception:  # noqa: BLE001 - queue.Empty: no session there yet
                        continue
                    s.recv_kind("hello")
                    s.fail(pb.ERROR_CODE_SHUTTING_DOWN, grpc.StatusCode.UNAVAILABLE)
                    refused[engine.address] += 1
            # Full jitter from 100 ms doubling: about 6 attempts in 2 s, shared by both workers.
            total = sum(refused.values())
            assert 2 <= total < 40
            assert abs(refused[a.address] - refused[b.address]) <= 1
        finally:
            src.close()


def test_describe_tries_each_address_in_turn():
    info = pb.DescribeResponse(app="user-totals", cluster_addresses=["127.0.0.1:1"])
    with ScriptedEngine(describe=info) as engine:
        got = describe(f"127.0.0.1:{free_port()},{engine.address}", timeout_s=1)
    assert (got.app, list(got.cluster_addresses)) == ("user-totals", ["127.0.0.1:1"])
