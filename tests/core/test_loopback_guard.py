"""The suite's network fence refuses every non-loopback destination before a packet is sent."""

from __future__ import annotations

import socket

import pytest

from tests.loopback_guard import is_loopback


@pytest.mark.parametrize(
    "address",
    [("169.254.169.254", 80), ("10.1.2.3", 443), ("172.16.3.4", 443), ("192.168.1.1", 80),
     ("93.184.216.34", 443), ("fe80::1%eth0", 80, 0, 0), ("::ffff:169.254.169.254", 80, 0, 0),
     ("example.org", 443)],
)  # fmt: skip
def test_non_loopback_is_refused_before_connecting(address: tuple) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    assert not is_loopback(address)
    with socket.socket(family, socket.SOCK_STREAM) as s, pytest.raises(ConnectionRefusedError, match="fence"):
        s.connect(address)
    with socket.socket(family, socket.SOCK_STREAM) as s, pytest.raises(ConnectionRefusedError, match="fence"):
        s.connect_ex(address)


@pytest.mark.parametrize(
    "address", [("127.0.0.1", 9), ("127.8.9.1", 9), ("::1", 9, 0, 0), ("localhost", 9), "/tmp/x.sock"]
)
def test_loopback_passes(address: object) -> None:
    assert is_loopback(address)
