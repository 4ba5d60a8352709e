#!/usr/bin/python3
"""The partition function of examples/python-partitioner/app.ts, served over gRPC.

The engine sends batches of the values that reach ``.keyBy(partitioner("word-key"))`` (here, words
as UTF-8 text) and routes each by the key this function returns, exactly as an in-app
``keyBy((word) => word)`` would route the same string. Any deterministic function of the value
works (R-PART-DETERMINISTIC): a user id parsed out of JSON, a tenant looked up in a table, ...
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

try:
    import keyway_connector  # noqa: F401
except ImportError:  # running from a checkout: use the SDK beside the example
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))

from keyway_connector import ConnectorError, Partitioner  # noqa: E402


def word_key(value: bytes) -> str:
    """The key of one word: the word itself (the app has already lower-cased it)."""
    return value.decode("utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default=os.environ.get("KEYWAY_ENGINE", "127.0.0.1:7700"), help="HOST:PORT")
    parser.add_argument("--target", default="word-key", help="the partitioner name in the app")
    parser.add_argument("--tls-ca", help="dial the engine over TLS, trusting this CA (PEM file)")
    parser.add_argument("--tls-cert", help="mutual TLS: this connector's certificate (PEM file, with --tls-key)")
    parser.add_argument("--tls-key", help="the private key of --tls-cert (PEM file)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        partitioner = Partitioner(target=args.target, connector_name="word-key-partitioner", engine=args.engine,
                                  tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                                  keys=lambda values: [word_key(v) for v in values])
    except ValueError as err:  # a TLS file that cannot be read
        logging.error("exiting: %s", err)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: partitioner.stop())
    signal.signal(signal.SIGINT, lambda *_: partitioner.stop())
    try:
        partitioner.run()
    except ConnectorError as err:
        logging.error("exiting: %s", err)
        return 1
    logging.info("stopped after keying %d values in %d requests", partitioner.values_keyed,
                 partitioner.requests_answered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
