"""Parsing of HOST:PORT addresses and the loopback rule for plaintext."""

from __future__ import annotations

import ipaddress

from backstop.core.errors import InvalidInput


def split_host_port(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[V6]:PORT``; raise InvalidInput with the expected form."""
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if sep and rest.startswith(":") else ""
    else:
        host, sep, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidInput(
            f"malformed address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:7443"
        )
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_addresses(text: str) -> list[str]:
    """``HOST:PORT[,HOST:PORT...]`` (controller replicas, in order of preference)."""
    addresses = [part.strip() for part in text.split(",") if part.strip()]
    if not addresses:
        raise InvalidInput("no controller address given: expected HOST:PORT[,HOST:PORT...]")
    for address in addresses:
        split_host_port(address)
    return addresses


def require_loopback_for_plaintext(address: str) -> None:
    """Plaintext gRPC is only allowed on loopback (security model: mTLS everywhere else).

    ``address`` may list several, comma-separated; each must be loopback.
    """
    for one in split_addresses(address):
        host, _ = split_host_port(one)
        if not is_loopback(host):
            raise InvalidInput(
                f"refusing plaintext gRPC to {one}: plaintext is allowed only on loopback; "
                "configure mutual TLS for other addresses"
            )
