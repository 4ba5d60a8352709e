"""TLS to the engine: the material (a CA to trust, and a client certificate for mutual TLS), the
gRPC channel that uses it, and the words for a TLS failure.

gRPC reports most TLS failures as "failed to connect", the same as a port nobody listens on.
After such a failure the SDK dials once more with Python's own ``ssl`` (same CA, certificate and
key), which sees the real reason: the engine speaks TLS and this connector does not, or the
reverse, the engine's certificate is not trusted or not for this host, the engine requires a
client certificate or refuses this one. Each is a configuration error: retrying cannot help.
"""
from __future__ import annotations

import os
import socket
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import grpc

#: A PEM file's path, or its bytes.
Pem = Union[str, bytes]

_REFUSAL_WAIT_S = 0.3
_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class TlsMaterial:
    """What a connector trusts and presents, as PEM bytes. ``ca`` None: the system's CAs."""

    ca: Optional[bytes] = None
    cert: Optional[bytes] = field(default=None, repr=False)
    key: Optional[bytes] = field(default=None, repr=False)


def _read_pem(name: str, value: Pem) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        with open(value, "rb") as f:
            data = f.read()
    except OSError as err:
        raise ValueError(f"{name}: cannot read {value} ({err.strerror or err})") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f'{name}: {value} holds no PEM data (expected "-----BEGIN ...")')
    return data


def resolve_tls(tls: bool, tls_ca: Optional[Pem], tls_cert: Optional[Pem], tls_key: Optional[Pem]) -> Optional[TlsMaterial]:
    """The material from the options (files read now); None for plaintext."""
    if tls_ca is None and tls_cert is None and tls_key is None:
        return TlsMaterial() if tls else None
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together: this connector's certificate and its private key")
    return TlsMaterial(
        ca=None if tls_ca is None else _read_pem("tls_ca", tls_ca),
        cert=None if tls_cert is None else _read_pem("tls_cert", tls_cert),
        key=None if tls_key is None else _read_pem("tls_key", tls_key),
    )


def open_channel(address: str, tls: Optional[TlsMaterial], options: Sequence[Tuple[str, Any]] = ()) -> grpc.Channel:
    """A plaintext channel without ``tls``, else one over TLS checking the engine's certificate."""
    if tls is None:
        return grpc.insecure_channel(address, options=list(options))
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert)
    return grpc.secure_channel(address, credentials, options=list(options))


def may_be_tls_failure(details: str) -> bool:
    """A status detail that may hide a TLS failure (the dial failed, nothing refused at TCP level)."""
    lowered = details.lower()
    hints = ("failed to connect", "socket closed", "connection reset", "ssl", "handshake", "certificate", "tls", "end of tcp stream")
    refused = ("connection refused", "no route to host", "network is unreachable", "dns resolution failed")
    return any(h in lowered for h in hints) and not any(r in lowered for r in refused)


def _split_host_port(address: str) -> Tuple[str, int]:
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def diagnose(address: str, tls: Optional[TlsMaterial]) -> Optional[str]:
    """A sentence naming the TLS misconfiguration with the engine at ``address``, or None when TLS
    is not the problem."""
    try:
        host, port = _split_host_port(address)
    except ValueError:
        return None
    try:
        sock = socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S)
    except OSError:
        return None  # not even TCP: not a TLS matter
    with sock, _Context(tls) as context:
        try:
            with context.wrap_socket(sock, server_hostname=host) as tls_sock:
                # Under TLS 1.3 the engine checks a client certificate after the handshake: a gRPC
                # server that accepts sends its HTTP/2 SETTINGS at once; one that refuses closes.
                tls_sock.settimeout(_REFUSAL_WAIT_S)
                try:
                    data = tls_sock.recv(1)
                except socket.timeout:
                    return None
                except ssl.SSLError as err:
                    return _explain(address, tls, err) or _refused(address, tls)
                except OSError:
                    return _refused(address, tls)
                if data:
                    return None
                return _refused(address, tls)
        except ssl.SSLCertVerificationError as err:
            if tls is None:
                return None
            if "hostname" in (err.verify_message or "").lower() or "ip address mismatch" in (err.verify_message or "").lower():
                return (f"the engine's certificate is not valid for {address} ({err.verify_message}): dial a name or "
                        "address its subjectAltName lists, or give the engine a certificate for this one")
            return (f"this connector does not trust the engine's certificate at {address} ({err.verify_message}): "
                    "give it the CA that signed the engine's certificate (tls_ca, --tls-ca)")
        except ssl.SSLError as err:
            if tls is None:
                return None
            return _explain(address, tls, err)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, EOFError):
            if tls is None:
                return None
            return _plaintext_engine(address)
        except OSError:
            return None


def _plaintext_engine(address: str) -> str:
    return (f"the engine at {address} does not speak TLS (it serves plaintext) and this connector dials TLS: "
            "drop tls_ca, tls_cert and tls_key, or start the engine with --tls-cert and --tls-key")


def _refused(address: str, tls: Optional[TlsMaterial]) -> str:
    if tls is None:
        return (f"the engine at {address} serves TLS and this connector dials plaintext: give it the CA of the "
                "engine's certificate (tls_ca, --tls-ca)")
    if tls.cert is None:
        return (f"the engine at {address} closed the connection after the TLS handshake: it requires a client "
                "certificate (mutual TLS); give this connector tls_cert and tls_key (--tls-cert, --tls-key)")
    return (f"the engine at {address} closed the connection after the TLS handshake: it refused this connector's "
            "client certificate, which must be signed by the CA the engine trusts (--tls-client-ca)")


def _explain(address: str, tls: Optional[TlsMaterial], err: ssl.SSLError) -> Optional[str]:
    if tls is None:
        return None
    reason = (getattr(err, "reason", None) or "").upper()
    text = f"{reason} {err}".upper()
    if "WRONG_VERSION_NUMBER" in text or "PACKET_LENGTH_TOO_LONG" in text or "UNKNOWN_PROTOCOL" in text or "RECORD_LAYER_FAILURE" in text:
        return _plaintext_engine(address)
    if "CERTIFICATE_REQUIRED" in text or ("HANDSHAKE_FAILURE" in text and tls.cert is None):
        return (f"the engine at {address} requires a client certificate (mutual TLS): give this connector tls_cert "
                "and tls_key (--tls-cert, --tls-key), signed by the CA the engine trusts (--tls-client-ca)")
    if tls.cert is not None and any(a in text for a in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN",
                                                        "DECRYPT_ERROR", "ACCESS_DENIED", "CERTIFICATE_EXPIRED")):
        return (f"the engine at {address} refused this connector's client certificate ({reason or err}): it must be "
                "signed by the CA the engine trusts (--tls-client-ca) and be valid now")
    return f"TLS with the engine at {address} failed: {reason or err}"


class _Context:
    """An ``ssl.SSLContext`` for the probe; a client certificate given as bytes goes through
    temporary files (``load_cert_chain`` reads files only), removed on exit."""

    def __init__(self, tls: Optional[TlsMaterial]) -> None:
        self._tls = tls
        self._files: List[str] = []

    def __enter__(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.set_alpn_protocols(["h2"])
        tls = self._tls
        if tls is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if tls.ca is not None:
            context.load_verify_locations(cadata=tls.ca.decode("ascii", "replace"))
        else:
            context.load_default_certs()
        if tls.cert is not None and tls.key is not None:
            context.load_cert_chain(self._file(tls.cert), self._file(tls.key))
        return context

    def _file(self, data: bytes) -> str:
        fd, path = tempfile.mkstemp(prefix="keyway-tls-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self._files.append(path)
        return path

    def __exit__(self, *exc: object) -> None:
        for path in self._files:
            try:
                os.unlink(path)
            except OSError:
                pass
