"""Source role against a scripted engine: handshake, credits, batching, positions, commits,
replay after reconnect, end of stream, and the errors that stop or restart a source."""
from __future__ import annotations

import logging
import socket

import grpc
import pytest

from keyway_connector import Backoff, ConfigurationError, ConnectorStopped, ErrorCode, Source
from keyway_connector._proto import pb
from scripted_engine import LIMITS, ScriptedEngine

FAST = Backoff(initial_s=0.01, max_s=0.05, reset_after_s=5.0)


@pytest.fixture
def engine():
    with ScriptedEngine() as e:
        yield e


def make_source(engine, **kw):
    kw.setdefault("backoff", FAST)
    kw.setdefault("engine", engine.address)
    kw.setdefault("target", "payments")
    kw.setdefault("streams", ["q"])
    return Source(**kw)


def open_stream(s, stream="q", resume_after=0, committed=0):
    assert s.recv_kind("open").stream == stream
    s.send(opened=pb.StreamOpened(stream=stream, resume_after=resume_after, committed=committed))


def records_until(s, count):
    """Reads batches until ``count`` records arrived; returns them (checks nothing else came)."""
    got = []
    while len(got) < count:
        got.extend(s.recv_kind("batch").records)
    assert len(got) == count
    return got


def test_hello_carries_version_identity_target_and_token(engine):
    src = make_source(engine, connector_name="rabbitmq-source", instance_id="rq-2", token="s3cret").start()
    s = engine.next_session()
    hello = s.welcome(initial_credits=1)
    assert (hello.version.major, hello.version.minor) == (1, 0)
    assert hello.connector_name == "rabbitmq-source"
    assert hello.instance_id == "rq-2"
    assert hello.target == "payments"
    assert hello.token == "s3cret"
    assert list(hello.capabilities) == []
    src.close()
    assert s.violations == []


def test_token_defaults_to_environment(engine, monkeypatch):
    monkeypatch.setenv("KEYWAY_TOKEN", "from-env")
    src = make_source(engine).start()
    s = engine.next_session()
    assert s.welcome().token == "from-env"
    src.close()


def test_never_more_records_in_flight_than_credits(engine):
    src = make_source(engine, linger_s=0).start()
    s = engine.next_session()
    s.welcome(initial_credits=5)
    for i in range(12):
        src.send("q", f"v{i}")
    open_stream(s)
    first = records_until(s, 5)
    s.send(credits=pb.Credits(records=3))
    second = records_until(s, 3)
    s.send(credits=pb.Credits(records=100))
    third = records_until(s, 4)
    assert [r.value for r in first + second + third] == [f"v{i}".encode() for i in range(12)]
    assert s.violations == []
    src.close(timeout=0.1)  # nothing is committed here


def test_batches_hold_records_per_batch_and_linger_until_flush(engine):
    src = make_source(engine, records_per_batch=100, linger_s=3600).start()
    s = engine.next_session()
    s.welcome(initial_credits=1000)
    open_stream(s)
    for i in range(250):
        src.send("q", b"x")
    assert len(s.recv_kind("batch").records) == 100
    assert len(s.recv_kind("batch").records) == 100
    src.flush()  # the last 50 would otherwise wait for the (hour-long) linger
    assert len(s.recv_kind("batch").records) == 50
    src.close(timeout=0.1)  # nothing is committed here


def test_a_partial_batch_goes_after_its_linger_time(engine):
    src = make_source(engine, records_per_batch=100, linger_s=0.02).start()
    s = engine.next_session()
    s.welcome(initial_credits=1000)
    open_stream(s)
    src.send("q", b"only")
    assert [r.value for r in s.recv_kind("batch").records] == [b"only"]
    src.close(timeout=0.1)  # nothing is committed here


def test_batches_respect_the_engines_max_batch_records(engine):
    src = make_source(engine, records_per_batch=100, linger_s=0).start()
    s = engine.next_session()
    s.welcome(initial_credits=1000, limits=pb.Limits(max_batch_records=3, max_message_bytes=16 << 20))
    open_stream(s)
    for i in range(10):
        src.send("q", b"x")
    sizes = []
    while sum(sizes) < 10:
        sizes.append(len(s.recv_kind("batch").records))
    assert max(sizes) <= 3
    src.close(timeout=0.1)  # nothing is committed here


def test_batches_respect_max_message_bytes(engine):
    src = make_source(engine, records_per_batch=100, linger_s=3600).start()
    s = engine.next_session()
    s.welcome(initial_credits=1000, limits=pb.Limits(max_batch_records=100, max_message_bytes=64 * 1024))
    open_stream(s)
    for i in range(10):
        src.send("q", b"x" * 20_000)
    src.flush()
    total = 0
    while total < 10:
        batch = s.recv_kind("batch")
        assert pb.SourceRequest(batch=batch).ByteSize() <= 64 * 1024
        total += len(batch.records)
    src.close(timeout=0.1)  # nothing is committed here


def test_sdk_numbers_positions_after_resume_after(engine):
    src = make_source(engine, linger_s=0).start()
    s = engine.next_session()
    s.welcome(initial_credits=100)
    src.send("q", b"a", idempotency_id="m-1", headers={"h": "1"}, key="k", event_time_ms=7)
    open_stream(s, resume_after=40, committed=40)
    (r,) = records_until(s, 1)
    assert (r.position, r.value, r.idempotency_id, dict(r.headers), r.key, r.event_time_ms) == \
        (41, b"a", "m-1", {"h": "1"}, b"k", 7)
    src.send("q", b"b")
    (r,) = records_until(s, 1)
    assert r.position == 42
    src.close(timeout=0.1)  # nothing is committed here


# (value, key, event_time_ms, idempotency_id): what the SDK encodes itself, and what it hands to
# the generated code (a negative time).
RECORD_FIELDS = [
    (b"v", None, 0, ""),
    (b"", None, 0, ""),
    (b"x" * 127, None, 0, ""),
    (b"x" * 128, b"", 0, ""),
    (b"x" * 20_000, "k\u00e9y", 1_700_000_000_000, "m-\u00e9-1"),
    ("caf\u00e9", b"k", (1 << 63) - 1, ""),
    (b"v", None, -5, "m-2"),
]


@pytest.mark.parametrize("value,key,event_time_ms,idempotency_id", RECORD_FIELDS, ids=[
    "value", "empty", "127 bytes", "128 bytes, empty key", "every field", "str value, int64 max", "negative time"])
def test_records_arrive_as_the_generated_code_encodes_them(engine, value, key, event_time_ms, idempotency_id):
    src = make_source(engine, linger_s=0).start()
    s = engine.next_session()
    s.welcome(initial_credits=10)
    open_stream(s)
    src.send("q", value, key=key, event_time_ms=event_time_ms, idempotency_id=idempotency_id)
    (r,) = records_until(s, 1)
    expected = pb.Record(position=1, value=value.encode() if isinstance(value, str) else value,
                         event_time_ms=event_time_ms, idempotency_id=idempotency_id)
    if key is not None:
        expected.key = key.encode() if isinstance(key, str) else key
    assert r == expected
    assert r.SerializeToString() == expected.SerializeToString()
    src.close(timeout=0.1)  # nothing is committed here


def test_a_value_protobuf_rejects_fails_in_send(engine):
    src = make_source(engine)
    with pytest.raises(TypeError):
        src.send("q", 42)
    with pytest.raises(TypeError):
        src.send("q", bytearray(b"v"))
    with pytest.raises(ValueError):
        src.send("q", b"v", event_time_ms=1 << 63)


def test_commits_report_contexts_in_order_and_free_the_buffer(engine):
    calls = []
    src = make_source(engine, linger_s=0, on_committed=lambda st, p, c: calls.append((st, p, c))).start()
    s = engine.next_session()
    s.welcome(initial_credits=100)
    open_stream(s)
    for i in range(1, 6):
        src.send("q", b"x", context=f"tag-{i}")
    records_until(s, 5)
    s.send(committed=pb.Committed(stream="q", position=2))
    s.send(committed=pb.Committed(stream="q", position=5))
    assert src.wait_committed(10)
    assert calls == [("q", 2, ["tag-1", "tag-2"]), ("q", 5, ["tag-3", "tag-4", "tag-5"])]
    assert src.buffered_records == 0
    src.close()


def test_reconnect_resends_uncommitted_records_with_original_positions(engine):
    calls = []
    src = make_source(engine, linger_s=0, on_committed=lambda st, p, c: calls.append((p, c))).start()
    s1 = engine.next_session()
    s1.welcome(initial_credits=100)
    open_stream(s1)
    for i in range(1, 11):
        src.send("q", f"v{i}", idempotency_id=f"m-{i}", context=i)
    assert [r.position for r in records_until(s1, 10)] == list(range(1, 11))
    s1.send(committed=pb.Committed(stream="q", position=4))
    s1.end(grpc.StatusCode.UNAVAILABLE, "connection lost")

    s2 = engine.next_session()
    s2.welcome(initial_credits=100)
    # The engine applied up to 6 before the connection broke; 5 and 6 wait for their commit.
    open_stream(s2, resume_after=6, committed=4)
    resent = records_until(s2, 4)
    assert [(r.position, r.value, r.idempotency_id) for r in resent] == \
        [(p, f"v{p}".encode(), f"m-{p}") for p in range(7, 11)]
    src.send("q", b"new", context=11)
    (r,) = records_until(s2, 1)
    assert r.position == 11
    s2.send(committed=pb.Committed(stream="q", position=11))
    assert src.wait_committed(10)
    assert calls == [(4, [1, 2, 3, 4]), (11, [5, 6, 7, 8, 9, 10, 11])]
    assert s1.violations == [] and s2.violations == []
    src.close()


def test_after_an_engine_restart_everything_uncommitted_is_resent(engine):
    src = make_source(engine, linger_s=0).start()
    s1 = engine.next_session()
    s1.welcome(initial_credits=100)
    open_stream(s1, resume_after=100, committed=100)
    for i in range(5):
        src.send("q", b"x")
    assert [r.position for r in records_until(s1, 5)] == [101, 102, 103, 104, 105]
    s1.send(committed=pb.Committed(stream="q", position=102))
    s1.fail(pb.ERROR_CODE_SHUTTING_DOWN, grpc.StatusCode.UNAVAILABLE, "engine stopping")
    s2 = engine.next_session()
    s2.welcome(initial_credits=100)
    open_stream(s2, resume_after=0, committed=0)  # restarted without --data-dir: it knows nothing
    assert [r.position for r in records_until(s2, 3)] == [103, 104, 105]
    src.send("q", b"y")
    assert [r.position for r in records_until(s2, 1)] == [106]
    src.close(timeout=0.1)  # nothing is committed here


def test_replay_buffer_is_bounded(engine):
    src = make_source(engine, replay_buffer_records=3).start()
    s = engine.next_session()
    s.welcome(initial_credits=0)
    for i in range(3):
        src.send("q", b"x")
    with pytest.raises(TimeoutError):
        src.send("q", b"x", timeout=0.2)
    open_stream(s)
    s.send(credits=pb.Credits(records=10))
    records_until(s, 3)
    s.send(committed=pb.Committed(stream="q", position=3))
    src.send("q", b"x", timeout=10)  # room again once committed
    src.close(timeout=0.1)


def test_explicit_positions_resume_from_stream_opened(engine):
    src = make_source(engine, linger_s=0, streams=["in.txt"]).start()
    s = engine.next_session()
    s.welcome(initial_credits=100)
    open_stream(s, "in.txt", resume_after=1200, committed=1100)
    info = src.wait_opened("in.txt", timeout=10)
    assert (info.resume_after, info.committed) == (1200, 1100)
    src.send("in.txt", b"line", position=1213)
    src.send("in.txt", b"line", position=1226)
    assert [r.position for r in records_until(s, 2)] == [1213, 1226]
    with pytest.raises(ValueError):
        src.send("in.txt", b"back", position=1226)
    with pytest.raises(ValueError):
        src.send("in.txt", b"no position")
    src.close(timeout=0.1)


def test_end_stream_waits_for_stream_ended(engine):
    src = make_source(engine, linger_s=3600).start()
    s = engine.next_session()
    s.welcome(initial_credits=100)
    open_stream(s)
    for i in range(3):
        src.send("q", b"x")
    src.end_stream("q")
    assert len(records_until(s, 3)) == 3  # ending flushes the partial batch
    assert s.recv_kind("end").stream == "q"
    with pytest.raises(ValueError):
        src.send("q", b"late")
    s.send(committed=pb.Committed(stream="q", position=3))
    s.send(ended=pb.StreamEnded(stream="q", position=3))
    assert src.wait_ended("q", timeout=10) == 3
    assert src.buffered_records == 0
    src.close()
    assert s.recv() is None  # half-closed after the end


@pytest.mark.parametrize("code,status", [
    (ErrorCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED),
    (ErrorCode.UNSUPPORTED_VERSION, grpc.StatusCode.FAILED_PRECONDITION),
    (ErrorCode.UNKNOWN_TARGET, grpc.StatusCode.NOT_FOUND),
    (ErrorCode.STREAM_OWNED, grpc.StatusCode.FAILED_PRECONDITION),
    (ErrorCode.SESSION_REPLACED, grpc.StatusCode.ABORTED),
    (ErrorCode.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED),
])
def test_configuration_errors_stop_without_reconnecting(engine, code, status):
    src = make_source(engine).start()
    s = engine.next_session()
    s.recv_kind("hello")
    s.fail(int(code), status, "no")
    with pytest.raises(ConfigurationError) as caught:
        src.join(10)
    assert caught.value.code == code
    assert caught.value.grpc_status == status
    assert len(engine.all_sessions) == 1
    with pytest.raises(ConfigurationError):
        src.send("q", b"x")


def test_a_welcome_with_another_major_is_a_configuration_error(engine):
    src = make_source(engine).start()
    s = engine.next_session()
    s.welcome(initial_credits=1, major=2)
    with pytest.raises(ConfigurationError) as caught:
        src.join(10)
    assert caught.value.code == ErrorCode.UNSUPPORTED_VERSION


def test_token_is_never_logged(engine, caplog):
    caplog.set_level(logging.DEBUG, logger="keyway_connector")
    src = make_source(engine, token="s3cret-token").start()
    s = engine.next_session()
    s.recv_kind("hello")
    s.fail(pb.ERROR_CODE_UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED, "bad token")
    with pytest.raises(ConfigurationError) as caught:
        src.join(10)
    assert "s3cret-token" not in caplog.text
    assert "s3cret-token" not in str(caught.value)


@pytest.mark.parametrize("code,status", [
    (pb.ERROR_CODE_STREAM_BUSY, grpc.StatusCode.ALREADY_EXISTS),
    (pb.ERROR_CODE_TOO_MANY_STREAMS, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (pb.ERROR_CODE_SHUTTING_DOWN, grpc.StatusCode.UNAVAILABLE),
    (pb.ERROR_CODE_PROTOCOL_VIOLATION, grpc.StatusCode.FAILED_PRECONDITION),
    (99, grpc.StatusCode.FAILED_PRECONDITION),  # a code from a newer minor: acted on by status
])
def test_other_errors_reconnect(engine, code, status, caplog):
    caplog.set_level(logging.WARNING, logger="keyway_connector")
    src = make_source(engine).start()
    s1 = engine.next_session()
    s1.welcome(initial_credits=1)
    s1.fail(code, status)
    s2 = engine.next_session()
    assert s2.welcome().target == "payments"
    assert "reconnecting" in caplog.text
    src.close()


def test_an_unknown_status_without_error_is_final_when_not_found(engine):
    src = make_source(engine).start()
    s = engine.next_session()
    s.recv_kind("hello")
    s.end(grpc.StatusCode.NOT_FOUND, "no such target")
    with pytest.raises(ConfigurationError):
        src.join(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_engine_down_at_start_then_up(caplog):
    caplog.set_level(logging.WARNING, logger="keyway_connector")
    port = free_port()
    src = Source(engine=f"127.0.0.1:{port}", target="payments", backoff=FAST, linger_s=0).start()
    src.send("q", b"waiting")
    # Failures are logged with their attempt number; wait until a few happened.
    import time
    deadline = time.monotonic() + 10
    while "attempt 3" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.01)
    with ScriptedEngine(port=port) as engine:
        s = engine.next_session()
        s.welcome(initial_credits=10)
        open_stream(s)
        assert [r.value for r in records_until(s, 1)] == [b"waiting"]
        src.close(timeout=0.1)


def test_give_up_after_max_consecutive_failures():
    src = Source(engine=f"127.0.0.1:{free_port()}", target="payments", backoff=FAST,
                 max_consecutive_failures=3).start()
    with pytest.raises(Exception) as caught:
        src.join(10)
    assert caught.value.grpc_status == grpc.StatusCode.UNAVAILABLE


def test_redirect_dials_the_new_address_with_the_same_hello(engine):
    with ScriptedEngine() as other:
        src = make_source(engine, instance_id="i-1", token="t").start()
        s1 = engine.next_session()
        s1.welcome(initial_credits=1)
        s1.redirect(other.address)
        s2 = other.next_session()
        hello = s2.welcome(initial_credits=1)
        assert (hello.instance_id, hello.token, hello.target) == ("i-1", "t", "payments")
        src.close()


def test_no_welcome_within_the_handshake_timeout_retries(engine):
    src = make_source(engine, handshake_timeout_s=0.2).start()
    s1 = engine.next_session()
    s1.recv_kind("hello")  # never answered
    s2 = engine.next_session()
    s2.welcome(initial_credits=1)
    src.close()


def test_send_after_close_raises(engine):
    src = make_source(engine).start()
    s = engine.next_session()
    s.welcome(initial_credits=1)
    src.close()
    with pytest.raises(ConnectorStopped):
        src.send("q", b"x")


def test_several_streams_share_the_credits(engine):
    src = make_source(engine, linger_s=0, streams=[]).start()
    s = engine.next_session()
    s.welcome(initial_credits=6)
    for i in range(5):
        src.send("a", b"a")
        src.send("b", b"b")
    opened = {s.recv_kind("open").stream, s.recv_kind("open").stream}
    assert opened == {"a", "b"}
    for name in ("a", "b"):
        s.send(opened=pb.StreamOpened(stream=name))
    got = records_until(s, 6)
    s.send(credits=pb.Credits(records=4))
    got += records_until(s, 4)
    assert sorted(r.value for r in got) == [b"a"] * 5 + [b"b"] * 5
    assert s.violations == []
    src.close(timeout=0.1)


def test_stream_opened_commits_and_skips_what_the_engine_applied(engine):
    calls = []
    src = make_source(engine, linger_s=0, on_committed=lambda st, p, c: calls.append((p, c))).start()
    s1 = engine.next_session()
    s1.welcome(initial_credits=100)
    open_stream(s1)
    for i in range(1, 6):
        src.send("q", b"x", context=i)
    records_until(s1, 5)
    s1.end(grpc.StatusCode.UNAVAILABLE, "connection lost")
    s2 = engine.next_session()
    s2.welcome(initial_credits=100)
    # Applied up to 4, durable up to 2: 1-2 are committed now, 3-4 wait, only 5 is resent.
    open_stream(s2, resume_after=4, committed=2)
    assert [r.position for r in records_until(s2, 1)] == [5]
    assert calls == [(2, [1, 2])]
    s2.send(committed=pb.Committed(stream="q", position=5))
    assert src.wait_committed(10)
    assert calls == [(2, [1, 2]), (5, [3, 4, 5])]
    src.close()
