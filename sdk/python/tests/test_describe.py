import grpc
import pytest

from keyway_connector import describe
from keyway_connector._proto import pb
from scripted_engine import ScriptedEngine


def test_describe_returns_targets_versions_and_limits():
    info = pb.DescribeResponse(app="user-totals", sources=["payments"], sinks=["totals"],
                               versions=[pb.ProtocolVersion(major=1)], token_required=True)
    with ScriptedEngine(describe=info) as engine:
        got = describe(engine.address)
    assert (got.app, list(got.sources), got.token_required) == ("user-totals", ["payments"], True)


def test_describe_fails_with_a_deadline_when_nothing_listens():
    from test_source import free_port
    with pytest.raises(grpc.RpcError):
        describe(f"127.0.0.1:{free_port()}", timeout_s=1)
