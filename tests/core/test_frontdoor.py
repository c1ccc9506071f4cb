"""The HTTP front door of the real server (`cds serve`, uvicorn + cds/web/frontdoor.py) against slow,
oversized and abandoning clients (issue 15, findings 5 and 6). Loopback only, bounded loops, and
limits set small for the test (1 s timeouts, 4 KiB headers, 20 connections)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import LiveServer

LIMITS = {
    "CDS_HEADER_TIMEOUT_SECONDS": "1",
    "CDS_BODY_TIMEOUT_SECONDS": "1",
    "CDS_MAX_HEADER_BYTES": "4096",
    "CDS_MAX_CONNECTIONS": "20",
    "CDS_MAX_OTHER_BODY_BYTES": "65536",
}
WAIT_S = 5.0  # every refusal below must come well within this (the limits are 1 s)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(Path(tmp_path_factory.mktemp("frontdoor")), env=LIMITS) as s:
        yield s


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    sock.settimeout(WAIT_S)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or WAIT_S passes)."""
    out = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    return out


def status_of(raw: bytes) -> int | None:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None


def metrics(server: LiveServer) -> str:
    return server.client.get("/metrics").text


def test_slow_header_clients_get_408_and_idle_sockets_are_closed(server: LiveServer) -> None:
    slow = [connect(server) for _ in range(8)]
    idle = [connect(server) for _ in range(8)]
    started = time.monotonic()
    for s in slow:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    for _ in range(3):  # one header line each 0.2 s: never finishing
        time.sleep(0.2)
        for s in slow:
            with contextlib.suppress(OSError):
                s.sendall(b"X-Slow: 1\r\n")
    assert {status_of(answer(s)) for s in slow} == {408}
    assert {answer(s) for s in idle} == {b""}  # closed without a word
    assert time.monotonic() - started < 2 * WAIT_S
    for s in slow + idle:
        s.close()
    assert server.get("/healthz").status_code == 200


def test_slow_body_is_a_408_and_the_handler_sees_a_disconnect(server: LiveServer) -> None:
    s = connect(server)
    s.sendall(
        b"POST /sandbox/api/request HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"patient": '
    )
    raw = answer(s)
    s.close()
    assert status_of(raw) == 408, raw[:200]


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Many: 1\r\n" * 600 + b"\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: " + b"a" * 20000,  # never ends
        b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ],
)
def test_oversized_headers_are_a_431(server: LiveServer, request_head: bytes) -> None:
    s = connect(server)
    with contextlib.suppress(OSError):  # the server may close while we are still sending
        s.sendall(request_head)
    raw = answer(s)
    s.close()
    assert status_of(raw) == 431, raw[:200]


def test_headers_just_under_the_limit_are_fine(server: LiveServer) -> None:
    resp = server.client.get("/healthz", headers={"X-Pad": "a" * 3000})
    assert resp.status_code == 200


def test_oversized_bodies_are_a_413_on_every_endpoint(server: LiveServer) -> None:
    big = b'{"patient": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    for path in ("/sandbox/api/request", "/sandbox/api/token", "/healthz"):
        resp = server.client.post(path, content=big, headers={"content-type": "application/json"})
        assert resp.status_code in (405, 413), (path, resp.status_code)
        assert resp.status_code == 413 or path == "/healthz"
        assert len(resp.content) < 1000  # nothing echoed


def test_connections_above_the_limit_get_503_and_the_service_recovers(server: LiveServer) -> None:
    held = [connect(server) for _ in range(20)]
    time.sleep(0.2)
    extra = [connect(server) for _ in range(5)]
    refused = [status_of(answer(s)) for s in extra]
    assert refused == [503] * 5
    for s in held + extra:
        s.close()
    time.sleep(0.2)
    assert server.get("/healthz").status_code == 200


def test_keep_alive_requests_still_work(server: LiveServer) -> None:
    """The header deadline is per request: a connection that keeps answering stays usable."""
    for _ in range(3):
        assert server.client.get("/healthz").status_code == 200
        time.sleep(0.5)
    assert server.client.get("/healthz").status_code == 200


def test_client_disconnect_is_not_an_error_nor_a_500(server: LiveServer) -> None:
    path = "/cds-services/deterioration"
    s = connect(server)
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.token(path)}\r\nContent-Length: 5000\r\n\r\n".encode()
        + b'{"hook": "patient-view"'
    )
    time.sleep(0.3)
    s.close()  # the EHR gave up
    deadline = time.monotonic() + WAIT_S
    while "cds_client_disconnects_total" not in metrics(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    text = metrics(server)
    assert 'cds_client_disconnects_total{service="deterioration"} 1.0' in text
    assert 'status="500"' not in text
    log = server.log()
    assert "Traceback" not in log and '"level": "ERROR"' not in log and "ERROR" not in log
