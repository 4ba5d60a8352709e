"""The records both senders of bench/python-sdk.ts send: record i (from 0) carries VALUES[i % 1000].
bench/python-sdk.ts builds the same values to check every record it receives."""
import json

VALUES = [json.dumps({"user": f"u{j}", "amount": j % 10 + 1}).encode() for j in range(1000)]
