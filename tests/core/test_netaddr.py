"""Addresses: HOST:PORT parsing, lists of controller replicas, and the plaintext loopback rule."""

from __future__ import annotations

import pytest

from backstop.core.errors import InvalidInput
from backstop.core.netaddr import (
    require_loopback_for_plaintext,
    split_addresses,
    split_host_port,
)


def test_host_port_forms() -> None:
    assert split_host_port("127.0.0.1:7443") == ("127.0.0.1", 7443)
    assert split_host_port("[::1]:7443") == ("::1", 7443)
    assert split_host_port(" controller.example:1 ") == ("controller.example", 1)
    for bad in ("", "host", "host:", ":7443", "host:99999", "[::1]7443", "host:port"):
        with pytest.raises(InvalidInput, match="expected HOST:PORT"):
            split_host_port(bad)


def test_replica_lists_keep_their_order_and_refuse_bad_entries() -> None:
    assert split_addresses("a.example:1, b.example:2,,") == ["a.example:1", "b.example:2"]
    with pytest.raises(InvalidInput, match="no controller address"):
        split_addresses(" , ")
    with pytest.raises(InvalidInput, match=r"'b\.example'"):
        split_addresses("a.example:1,b.example")


def test_plaintext_only_when_every_replica_is_loopback() -> None:
    require_loopback_for_plaintext("127.0.0.1:1,[::1]:2,localhost:3")
    with pytest.raises(InvalidInput, match=r"refusing plaintext gRPC to 10\.0\.0\.2:2"):
        require_loopback_for_plaintext("127.0.0.1:1,10.0.0.2:2")
