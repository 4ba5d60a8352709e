#!/usr/bin/python3
"""Python SDK throughput to the engine for bench/rabbitmq.ts: a Source sends ``--count`` small
JSON records, ``--per-message`` records per RecordBatch, and waits until the engine reports all of
them committed. Prints JSON with records/s and the process's CPU seconds."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))

from keyway_connector import Source  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--target", default="payments")
    parser.add_argument("--stream", default="bench")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--per-message", type=int, required=True)
    args = parser.parse_args()
    source = Source(engine=args.engine, target=args.target, connector_name="bench-sdk-send",
                    streams=[args.stream], records_per_batch=args.per_message,
                    linger_s=0 if args.per_message == 1 else 0.002, replay_buffer_records=50_000).start()
    source.wait_opened(args.stream, timeout=30)
    values = [json.dumps({"user": f"u{i % 1000}", "amount": i % 10 + 1}).encode() for i in range(1000)]
    cpu_start = os.times()
    started = time.perf_counter()
    for i in range(args.count):
        source.send(args.stream, values[i % 1000])
    if not source.wait_committed(timeout=600):
        print("not everything was committed within 600 s", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    cpu_end = os.times()
    source.close()
    print(json.dumps({"records": args.count, "per_message": args.per_message, "seconds": seconds,
                      "records_per_s": args.count / seconds,
                      "cpu_s": (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
