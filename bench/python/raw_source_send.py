#!/usr/bin/python3
"""The baseline of bench/python-sdk.ts: plain grpcio and the generated messages, no SDK. One
bidirectional Source call doing only what the protocol needs (docs/protocol.md §5.1, §7): Hello,
OpenStream once welcomed, then RecordBatches of ``--per-message`` records within the credits
granted, positions 1..count; it half-closes once the last position is committed. The request
iterator runs on grpcio's sending thread; responses are read on the main thread. Prints JSON with
the process's own view of the run."""
import argparse
import json
import os
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "sdk", "python", "keyway_connector", "gen"))

import grpc  # noqa: E402
from keyway.v1 import connector_pb2 as pb  # noqa: E402
from source_values import VALUES  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--per-message", type=int, required=True)
    args = parser.parse_args()
    count, per_message, stream = args.count, args.per_message, "bench"
    cond = threading.Condition()
    state = {"credits": 0, "welcomed": False, "opened": False, "committed": 0, "over": False}
    times = {}

    def requests():
        yield pb.SourceRequest(hello=pb.Hello(version=pb.ProtocolVersion(major=1, minor=0),
                                              connector_name="bench-python-raw", target="bench"))
        with cond:
            while not state["welcomed"]:
                if state["over"]:
                    return
                cond.wait()
        yield pb.SourceRequest(open=pb.OpenStream(stream=stream))
        with cond:
            while not state["opened"]:
                if state["over"]:
                    return
                cond.wait()
        times["cpu_start"] = os.times()
        times["started"] = time.perf_counter()
        values = VALUES
        position = 0
        while position < count:
            with cond:
                while state["credits"] <= 0:
                    if state["over"]:
                        return
                    cond.wait()
                n = min(per_message, state["credits"], count - position)
                state["credits"] -= n
            first = position + 1
            position += n
            yield pb.SourceRequest(batch=pb.RecordBatch(
                stream=stream, records=[pb.Record(position=p, value=values[(p - 1) % 1000]) for p in range(first, position + 1)]))
        with cond:
            while state["committed"] < count and not state["over"]:
                cond.wait()

    channel = grpc.insecure_channel(args.engine)
    call = channel.stream_stream("/keyway.v1.ConnectorService/Source",
                                 request_serializer=pb.SourceRequest.SerializeToString,
                                 response_deserializer=pb.SourceResponse.FromString)(requests())
    try:
        for response in call:
            kind = response.WhichOneof("kind")
            with cond:
                if kind == "credits":
                    state["credits"] += response.credits.records
                elif kind == "committed":
                    state["committed"] = response.committed.position
                elif kind == "welcome":
                    state["welcomed"] = True
                    state["credits"] = response.welcome.initial_credits
                elif kind == "opened":
                    state["opened"] = True
                elif kind in ("error", "redirect"):
                    print(f"the receiver answered {response}", file=sys.stderr)
                    return 1
                cond.notify_all()
    finally:
        with cond:
            state["over"] = True
            cond.notify_all()
    if state["committed"] < count:
        print(f"the call ended with {state['committed']} of {count} records committed", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - times["started"]
    cpu_end = os.times()
    cpu_start = times["cpu_start"]
    print(json.dumps({"records": count, "seconds": seconds,
                      "cpu_s": (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
