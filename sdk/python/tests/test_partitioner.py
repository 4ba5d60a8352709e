"""Partitioner role against a scripted engine: one key per value, same request id, credits."""
import json

import pytest

from keyway_connector import Backoff, Partitioner
from keyway_connector._proto import pb
from scripted_engine import LIMITS, ScriptedEngine

FAST = Backoff(initial_s=0.01, max_s=0.05)


@pytest.fixture
def engine():
    with ScriptedEngine() as e:
        yield e


def test_answers_each_request_with_its_id_and_one_key_per_value(engine):
    p = Partitioner(engine=engine.address, target="by-user", key=lambda v: json.loads(v)["user"],
                    backoff=FAST).start()
    s = engine.next_session()
    assert s.welcome().target == "by-user"
    assert s.recv_kind("credits").records == LIMITS.max_batch_records
    values = [b'{"user":"ann","amount":3}', b'{"user":"bob","amount":5}', b'{"user":"ann","amount":1}']
    s.send(batch=pb.PartitionBatch(request_id=17, values=values))
    s.send(batch=pb.PartitionBatch(request_id=18, values=[b'{"user":"cy","amount":2}']))
    keys = s.recv_kind("keys")
    assert keys.request_id == 17
    assert [k.text for k in keys.keys] == ["ann", "bob", "ann"]
    assert s.recv_kind("credits").records == 3
    keys = s.recv_kind("keys")
    assert (keys.request_id, [k.text for k in keys.keys]) == (18, ["cy"])
    assert s.recv_kind("credits").records == 1
    p.close()


def test_bytes_keys_and_a_bulk_function(engine):
    p = Partitioner(engine=engine.address, target="by-user", keys=lambda vs: [v[:2] for v in vs],
                    backoff=FAST).start()
    s = engine.next_session()
    s.welcome()
    s.recv_kind("credits")
    s.send(batch=pb.PartitionBatch(request_id=1, values=[b"abc", b"xyz"]))
    keys = s.recv_kind("keys")
    assert [(k.WhichOneof("kind"), k.raw) for k in keys.keys] == [("raw", b"ab"), ("raw", b"xy")]
    p.close()


def test_a_throwing_partition_function_stops_the_partitioner(engine):
    p = Partitioner(engine=engine.address, target="by-user", key=lambda v: json.loads(v)["user"],
                    backoff=FAST).start()
    s = engine.next_session()
    s.welcome()
    s.recv_kind("credits")
    s.send(batch=pb.PartitionBatch(request_id=1, values=[b"not json"]))
    with pytest.raises(json.JSONDecodeError):
        p.join(10)


def test_requires_exactly_one_function():
    with pytest.raises(ValueError):
        Partitioner(target="x")
    with pytest.raises(ValueError):
        Partitioner(target="x", key=str, keys=list)
