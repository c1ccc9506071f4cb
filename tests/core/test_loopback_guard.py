"""The suite's network fence refuses every non-loopback destination before a packet is sent.

The fence is tried on a stand-in for the socket's own connect that records its calls: no test here
ever asks the operating system to connect anywhere but loopback.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.loopback_guard import fence, fence_send, is_loopback


@pytest.mark.parametrize(
    "address",
    [("169.254.169.254", 80), ("10.1.2.3", 443), ("172.16.3.4", 443), ("192.168.1.1", 80),
     ("93.184.216.34", 443), ("fe80::1%eth0", 80, 0, 0), ("::ffff:169.254.169.254", 80, 0, 0),
     ("example.org", 443)],
)  # fmt: skip
def test_non_loopback_is_refused_before_connecting(address: tuple) -> None:
    reached: list[Any] = []
    fenced = fence(lambda sock, addr: reached.append(addr))
    assert not is_loopback(address)
    with pytest.raises(ConnectionRefusedError, match="fence"):
        fenced(None, address)  # type: ignore[arg-type]
    assert reached == []


@pytest.mark.parametrize(
    "address", [("127.0.0.1", 9), ("127.8.9.1", 9), ("::1", 9, 0, 0), ("localhost", 9), "/tmp/x.sock"]
)
def test_loopback_passes(address: object) -> None:
    reached: list[Any] = []
    assert is_loopback(address)
    fence(lambda sock, addr: reached.append(addr))(None, address)  # type: ignore[arg-type]
    assert reached == [address]


def test_the_suite_runs_fenced() -> None:
    """conftest installs the fence: the socket's connect methods are the fenced ones."""
    assert getattr(socket.socket, "_cds_fenced", False)
    for name in ("connect", "connect_ex", "sendto", "sendmsg"):
        assert getattr(socket.socket, name).__qualname__.startswith("fence"), name


@pytest.mark.parametrize(
    "address", [("169.254.169.254", 53), ("10.1.2.3", 53), ("192.168.1.1", 53), ("::1", 9, 0, 0)]
)
def test_datagrams_are_fenced_too(address: tuple) -> None:
    """sendto needs no connect: it is fenced on its own (a recording stand-in, nothing is sent)."""
    reached: list[Any] = []
    sendto = fence_send(lambda sock, *args: reached.append(args[-1]), 1)
    if is_loopback(address):
        sendto(None, b"x", address)
        assert reached == [address]
    else:
        with pytest.raises(ConnectionRefusedError, match="fence"):
            sendto(None, b"x", address)
        with pytest.raises(ConnectionRefusedError, match="fence"):
            sendto(None, b"x", 0, address)
        assert reached == []
    sendto(None, b"x")  # a connected socket's send: connect was already fenced
