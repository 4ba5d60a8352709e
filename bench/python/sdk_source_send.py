#!/usr/bin/python3
"""The Python SDK's sender for the benches: a ``Source`` sends ``--count`` records on one stream,
``--per-message`` records per RecordBatch, and waits until all of them are committed. Prints JSON
with the process's own view of the run.

bench/python-sdk.ts runs it into its receiver with the SDK's other options at their defaults;
bench/rabbitmq.ts runs it into the engine's rabbitmq example app (``--target payments``) with its
own linger and replay buffer."""
import argparse
import json
import os
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "sdk", "python"))

from keyway_connector import Source  # noqa: E402
from source_values import VALUES  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--target", default="bench")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--per-message", type=int, required=True)
    parser.add_argument("--linger-s", type=float, help="the Source's linger_s (default: the SDK's)")
    parser.add_argument("--replay-buffer-records", type=int, help="the Source's replay_buffer_records (default: the SDK's)")
    args = parser.parse_args()
    stream = "bench"
    tuning = {name: value for name, value in (("linger_s", args.linger_s), ("replay_buffer_records", args.replay_buffer_records))
              if value is not None}
    source = Source(engine=args.engine, target=args.target, connector_name="bench-python-sdk", streams=[stream],
                    records_per_batch=args.per_message, **tuning).start()
    source.wait_opened(stream, timeout=30)
    values = VALUES  # a local name is a faster lookup in the timed loop than a global
    cpu_start = os.times()
    started = time.perf_counter()
    for i in range(args.count):
        source.send(stream, values[i % 1000])
    if not source.wait_committed(timeout=600):
        print("not everything was committed within 600 s", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    cpu_end = os.times()
    source.close()
    print(json.dumps({"records": args.count, "seconds": seconds,
                      "cpu_s": (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
