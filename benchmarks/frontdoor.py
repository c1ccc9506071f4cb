"""The front door under slow clients, and what its checks cost (issue 15, finding 6).

    .venv/bin/python -m benchmarks.frontdoor            # attack (40 s per server) and cost
    .venv/bin/python -m benchmarks.frontdoor --cost     # only the per-request cost

Serves benchmarks/bare_app.py (no service work, so only the HTTP layer shows) with uvicorn's
stock protocols (`httptools`, `h11`) and with `cds.web.frontdoor:GuardedHttpToolsProtocol` (default
limits: 16 KiB headers, 10 s for headers, 30 s for a body, 500 connections).
Attack: 300 slow-header sockets and 100 slow-body sockets (a byte every 2 s), then how many are
still open after `--hold` seconds, and whether a normal request is answered meanwhile.
Cost: sequential keep-alive POSTs on loopback; the server process's CPU time per request (from\n/proc, so other load on the machine does not count), rounds in alternating order.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cds.runtime.settings import REPO_ROOT

SERVERS = {
    "httptools": "httptools",
    "h11": "h11",
    "guarded": "cds.web.frontdoor:GuardedHttpToolsProtocol",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(http: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.bare_app:app",
            "--http",
            http,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO_ROOT,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    for _ in range(100):
        try:
            httpx.post(f"http://127.0.0.1:{port}/cds-services/x", content=b"{}", timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"uvicorn --http {http} did not start")


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(4096)  # an answer (408) or b"" (closed): the server let go
    except BlockingIOError:
        return True  # nothing to read and not closed: still held
    except OSError:
        pass
    return False


def attack(http: str, hold: float) -> dict[str, object]:
    proc, port = start(http)
    try:
        header_socks, body_socks = [], []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /cds-services/x HTTP/1.1\r\nHost: x\r\n")
            header_socks.append(s)
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(
                b"POST /cds-services/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{"
            )
            body_socks.append(s)
        started = time.monotonic()
        while time.monotonic() - started < hold:
            time.sleep(2)
            for s in header_socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")
            for s in body_socks:
                with contextlib.suppress(OSError):
                    s.sendall(b" ")
        t0 = time.perf_counter()
        try:
            ok = httpx.post(f"http://127.0.0.1:{port}/cds-services/x", content=b"{}", timeout=5).status_code
        except httpx.HTTPError as e:
            ok = type(e).__name__
        legit_ms = round((time.perf_counter() - t0) * 1000, 1)
        result = {
            "server": http,
            "hold_s": hold,
            "slow_header_open": sum(still_open(s) for s in header_socks),
            "slow_body_open": sum(still_open(s) for s in body_socks),
            "normal_request": ok,
            "normal_request_ms": legit_ms,
        }
        for s in header_socks + body_socks:
            s.close()
        return result
    finally:
        proc.terminate()
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): robust to other load on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cost(rounds: int, per_round: int) -> dict[str, dict[str, float]]:
    """Server CPU microseconds per request (median and min over rounds, order alternating)."""
    servers = {name: start(http) for name, http in SERVERS.items()}
    cpu: dict[str, list[float]] = {name: [] for name in servers}
    try:
        clients = {
            name: httpx.Client(base_url=f"http://127.0.0.1:{port}") for name, (_, port) in servers.items()
        }
        names = list(servers)
        for r in range(rounds):
            for name in names if r % 2 == 0 else reversed(names):
                pid = servers[name][0].pid
                c0 = cpu_seconds(pid)
                for _ in range(per_round):
                    clients[name].post(
                        "/cds-services/x",
                        content=b'{"hook": "patient-view"}',
                        headers={"content-type": "application/json"},
                    )
                cpu[name].append((cpu_seconds(pid) - c0) / per_round * 1e6)
        return {
            name: {"median": round(statistics.median(v), 1), "min": round(min(v), 1)}
            for name, v in cpu.items()
        }
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cost", action="store_true", help="only the per-request cost")
    p.add_argument("--hold", type=float, default=40.0)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--per-round", type=int, default=1000)
    args = p.parse_args()
    if not args.cost:
        for name in ("httptools", "guarded"):
            print(attack(SERVERS[name], args.hold), flush=True)
    print("server CPU us per keep-alive request:", cost(args.rounds, args.per_round))


if __name__ == "__main__":
    main()
