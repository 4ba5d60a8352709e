"""The generated protocol code, imported once (internal). Regenerate with scripts/generate-python.sh."""
from .gen.keyway.v1 import connector_grpc as grpc_stub
from .gen.keyway.v1 import connector_pb2 as pb

__all__ = ["pb", "grpc_stub"]
