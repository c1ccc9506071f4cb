"""The test suite's network fence: a socket in the test process may connect to loopback only.

Tests of the outbound rules name link-local, private and public addresses on purpose (to show the
service refuses them). If the service ever regressed, the request must still never leave the
machine: every `socket.connect`/`connect_ex` (asyncio, aiohttp, httpx and urllib all end there) and
every addressed datagram send (`sendto`/`sendmsg`, which need no connect) to an address that is not
loopback fails here, before any packet is sent, with ConnectionRefusedError.
Subprocesses (`cds serve`, Node) are started with loopback URLs only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(address: Any) -> bool:
    """Whether a socket address (host, port[, ...]) names this machine."""
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and the like never leave the machine
    host = str(address[0]).split("%", 1)[0]
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: the tests never connect to one other than localhost
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def fence(connect: Callable[[socket.socket, Any], T]) -> Callable[[socket.socket, Any], T]:
    """`connect` (or `connect_ex`) refusing every address that is not loopback, before calling it."""

    def fenced(self: socket.socket, address: Any) -> T:
        if not is_loopback(address):
            raise ConnectionRefusedError(f"test network fence: only loopback may be reached, not {address!r}")
        return connect(self, address)

    return fenced


def fence_send(send: Callable[..., T], address_at: int) -> Callable[..., T]:
    """`sendto` / `sendmsg` refusing a destination that is not loopback; the destination is the
    argument after `address_at` others (absent: the socket is connected, and connect is fenced)."""

    def fenced(self: socket.socket, *args: Any) -> T:
        if len(args) > address_at and not is_loopback(args[-1]):
            raise ConnectionRefusedError(
                f"test network fence: only loopback may be reached, not {args[-1]!r}"
            )
        return send(self, *args)

    return fenced


def install() -> None:
    """Fence `socket.socket` for the rest of the process (idempotent)."""
    if getattr(socket.socket, "_cds_fenced", False):
        return
    socket.socket.connect = fence(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = fence(socket.socket.connect_ex)  # type: ignore[method-assign]
    socket.socket.sendto = fence_send(socket.socket.sendto, 1)  # type: ignore[method-assign]  # (data[, flags], address)
    socket.socket.sendmsg = fence_send(socket.socket.sendmsg, 3)  # type: ignore[method-assign]  # (buffers, anc, flags, address)
    socket.socket._cds_fenced = True  # type: ignore[attr-defined]
