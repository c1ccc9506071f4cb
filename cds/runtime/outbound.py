"""Where the service may send a request: the one gate for every outbound HTTP call.

The FHIR fallback, the JWK Set fetch and (next) the SMART Backend Services token client all go
through `OutboundClient.request`, which refuses anything the rules below do not allow, before a
byte is sent:

- **Target**: each request names the base it may reach (`Target.parse(base_url)`). The URL of
  every request, paging links included, is parsed and its scheme, host, port and path prefix
  compared with the base's (never a substring test); user info, a fragment, or a `.`/`..` path
  segment (even percent-encoded) is refused. A token therefore only goes where it was issued for.
- **Reach**: which schemes and addresses a caller may use. `Reach.STRICT` (production): https,
  public addresses only. `Reach.DEV` (development mode): http too, and loopback. `Reach.LOCAL` (a
  trusted client with `allow_local_fhir = true`): http, loopback and private addresses.
  Link-local (169.254.0.0/16, fe80::/10: cloud metadata services), unspecified, multicast and
  reserved addresses are never reached, whatever the reach.
- **Addresses are checked on the resolved IP, at connect time**: every session's connector has a
  resolver that refuses a name resolving to a forbidden address, and a socket factory that checks
  the exact address again before each socket is created (IP literals skip resolvers). So a DNS
  name rebound to 127.0.0.1 or 169.254.169.254 after the URL check cannot slip through. Each
  reach has its own session (connection pool), so a pooled connection opened for a looser reach
  is never reused for a stricter one.
- **No redirects**: a 3xx is the server's failure (`Refused`, whose message does not echo the
  status or the Location).
- **Bodies are read fully, up to a cap** (`max_bytes`, counted after decompression): a larger
  body is refused, never silently cut.
- No proxy from the environment (`trust_env` off): a proxy would hide the address that is checked.

API
---
    target = Target.parse("https://ehr.example.org/fhir")     # ValueError if not a plain base URL
    target.admits(url) -> bool                                 # url inside the base?
    reach = Reach.for_caller(dev=False, allow_local=False)     # STRICT / DEV / LOCAL
    client = OutboundClient(connect_timeout=2.0)               # one per process; start()/close()
    reply = await client.request(
        "GET", url, target=target, reach=reach,
        headers={"Authorization": "Bearer ..."}, data=None,    # data: bytes or a form dict
        max_bytes=1 << 20, timeout=2.0,
    )                                                          # -> Reply(status, content_type, body)
    reply.json()                                               # orjson; Failed if not JSON

SMART Backend Services (token client) on the same gate, with the trusted client's reach
(`TrustedClient.reach(dev)`, so `allow_local_fhir` also opens its token endpoint):

    fhir = Target.parse(fhir_base)
    conf = await client.request("GET", fhir.join(".well-known/smart-configuration"), target=fhir, ...)
    token_url = conf.json()["token_endpoint"]   # server-provided: check it against what is configured
    token = await client.request("POST", token_url, target=Target.parse(token_url),
                                 data={"grant_type": "client_credentials", ...}, ...)

Errors (both subclasses of `OutboundError`, messages safe to show a caller: no token, no query,
no internal status): `Refused` when the rules forbid the request (outside the target, scheme,
address, redirect); `Failed` when it was allowed but did not work (unreachable, timeout, too
large, TLS). Non-3xx statuses are returned for the caller to judge.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Addresses never reached whatever the reach: link-local covers 169.254.169.254 (AWS, GCP, Azure
# metadata); these are the metadata services that sit elsewhere (AWS IPv6, Alibaba Cloud).
_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})


class OutboundError(Exception):
    """An outbound request did not give an answer; the message is safe to show the caller."""


class Refused(OutboundError):
    """The rules forbid this request (target, scheme, address or redirect); nothing was sent."""


class Failed(OutboundError):
    """The request was allowed but did not succeed (unreachable, timeout, too large, TLS...)."""


class AddressRefused(OSError):
    """Raised inside the connector when a resolved address is outside the caller's reach."""


@dataclass(frozen=True)
class Reach:
    """Which schemes and kinds of address a request may use (link-local: never)."""

    name: str
    http: bool  # plain http allowed
    loopback: bool  # 127.0.0.0/8, ::1
    private: bool  # RFC 1918, unique-local, shared address space...

    @staticmethod
    def for_caller(*, dev: bool, allow_local: bool) -> Reach:
        """The reach of a caller: its client's `allow_local_fhir`, else dev mode, else strict."""
        if allow_local:
            return LOCAL
        return DEV if dev else STRICT

    def address_problem(self, address: str) -> str | None:
        """Why `address` (an IP literal) may not be reached, or None when it may."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return "not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_link_local or ip in _METADATA:
            return "a link-local address"
        if ip.is_loopback:  # before "reserved": ::1 lies in the reserved ::/8
            return None if self.loopback else "a loopback address"
        if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
            return "an unroutable address"
        if not ip.is_global:
            return None if self.private else "a private address"
        return None


STRICT = Reach("strict", http=False, loopback=False, private=False)
DEV = Reach("dev", http=True, loopback=True, private=False)
LOCAL = Reach("local", http=True, loopback=True, private=True)
Reach.STRICT, Reach.DEV, Reach.LOCAL = STRICT, DEV, LOCAL  # type: ignore[attr-defined]


def _has_dot_segment(raw_path: str) -> bool:
    return any(unquote(seg) in (".", "..") for seg in raw_path.split("/"))


def _parse(url: str) -> URL:
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        raise ValueError("not a plain URL")
    u = URL(url)
    if u.scheme not in _DEFAULT_PORTS or not u.raw_host or not u.is_absolute():
        raise ValueError("not an absolute http(s) URL")
    if u.raw_user is not None or u.raw_password is not None or u.raw_fragment:
        raise ValueError("user info or fragment")
    # yarl resolves dot segments when it parses, so look at the path as written too
    if _has_dot_segment(u.raw_path) or _has_dot_segment(urlsplit(url).path):
        raise ValueError("dot segment in path")
    return u


@dataclass(frozen=True)
class Target:
    """The base a request may go to: scheme, host, port and path prefix, compared exactly."""

    scheme: str
    host: str  # lower-case, IDNA-encoded, IPv6 without brackets
    port: int
    path: str  # raw (percent-encoded) path prefix without trailing slash; "" for the root

    @staticmethod
    def parse(base_url: str) -> Target:
        """The target for a base URL; ValueError when it is not a plain http(s) base URL."""
        u = _parse(base_url)
        if u.raw_query_string:
            raise ValueError("a base URL has no query")
        assert u.port is not None and u.raw_host is not None
        return Target(u.scheme, u.raw_host.lower(), u.port, u.raw_path.rstrip("/"))

    def admits(self, url: str | URL) -> bool:
        """Whether `url` lies inside this base (same scheme, host, port; path under the prefix)."""
        try:
            u = url if isinstance(url, URL) else _parse(url)
        except ValueError:
            return False
        if isinstance(url, URL) and (
            u.raw_user is not None or u.raw_fragment or _has_dot_segment(u.raw_path)
        ):
            return False
        return (
            u.scheme == self.scheme
            and (u.raw_host or "").lower() == self.host
            and u.port == self.port
            and (u.raw_path.rstrip("/") == self.path or u.raw_path.startswith(self.path + "/"))
        )

    def join(self, relative: str) -> str:
        """`relative` (a FHIR search such as `Observation?patient=1`) appended to the base."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}/{relative.lstrip('/')}"


@dataclass(frozen=True)
class Reply:
    """A complete answer: status, content type and the whole body (at most the cap)."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise Failed("the server answered with something that is not JSON") from None


class _GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then refuses names that resolve outside the reach."""

    def __init__(self, reach: Reach, inner: AbstractResolver | None = None) -> None:
        self.reach = reach
        self.inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for r in results:
            problem = self.reach.address_problem(r["host"])
            if problem:  # one bad address refuses the name: no "try the next one"
                raise AddressRefused(f"the server's name resolves to {problem}")
        return results

    async def close(self) -> None:
        await self.inner.close()


def _socket_factory(reach: Reach) -> Any:
    """A socket factory that checks the exact address each socket is about to connect to."""

    def make(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        problem = reach.address_problem(str(sockaddr[0]))
        if problem:
            raise AddressRefused(f"the server's address is {problem}")
        return socket.socket(family=family, type=type_, proto=proto)

    return make


def _refusal(e: BaseException) -> AddressRefused | None:
    """The AddressRefused behind a connector error, if that is what stopped it."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, AddressRefused):
            return cur
        stack += [getattr(cur, "os_error", None), cur.__cause__, cur.__context__]
        stack += [x for x in getattr(cur, "exceptions", ()) if isinstance(x, BaseException)]
    return None


class OutboundClient:
    """Owns the HTTP sessions (one per reach) for every outbound request of the process."""

    def __init__(
        self,
        *,
        connect_timeout: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
        resolver: AbstractResolver | None = None,
        limit: int = 200,
        limit_per_host: int = 50,
        user_agent: str = "cds",
    ) -> None:
        """`ssl_context`: trust store for https (default: the system's, `SSL_CERT_FILE` honoured);
        `resolver`: the name resolver under the guard (tests map names to chosen addresses)."""
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.resolver = resolver
        self.limit, self.limit_per_host = limit, limit_per_host
        self.user_agent = user_agent
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def start(self) -> None:
        """Nothing to open ahead: sessions are made on first use, inside the running loop."""

    def _session(self, reach: Reach) -> aiohttp.ClientSession:
        session = self._sessions.get(reach.name)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_GuardedResolver(reach, self.resolver),
                socket_factory=_socket_factory(reach),
                ssl=self.ssl_context if self.ssl_context is not None else True,
                limit=self.limit,
                limit_per_host=self.limit_per_host,
                ttl_dns_cache=60,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                headers={"User-Agent": self.user_agent},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
            )
            self._sessions[reach.name] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            await s.close()

    def check(self, url: str, *, target: Target, reach: Reach) -> URL:
        """The parsed URL if `url` may be requested under `target` and `reach`, else `Refused`.

        Checks what can be checked before connecting (the address itself is checked again on
        the resolved IP at connect time)."""
        try:
            u = _parse(url)
        except ValueError:
            raise Refused("the URL is not a plain http(s) URL") from None
        if not target.admits(u):
            raise Refused("the URL points outside the server it was given for")
        if u.scheme == "http" and not reach.http:
            raise Refused("plain http is not allowed here (https only)")
        host = (u.raw_host or "").strip("[]")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            if host.lower() == "localhost" or host.lower().endswith(".localhost"):
                problem = None if reach.loopback else "a loopback address"
            else:
                problem = None  # a name: checked on its resolved address at connect time
        else:
            problem = reach.address_problem(host)
        if problem:
            raise Refused(f"the server's address is {problem}")
        return u

    async def request(
        self,
        method: str,
        url: str,
        *,
        target: Target,
        reach: Reach,
        headers: Mapping[str, str] | None = None,
        data: bytes | Mapping[str, str] | None = None,
        max_bytes: int,
        timeout: float,
    ) -> Reply:
        """Send one request within the rules and read the whole answer (at most `max_bytes`).

        Raises Refused (nothing sent, or a redirect answered) or Failed."""
        u = self.check(url, target=target, reach=reach)
        try:
            async with asyncio.timeout(timeout):
                async with self._session(reach).request(
                    method,
                    u,
                    headers=dict(headers or {}),
                    data=data,
                    allow_redirects=False,
                ) as resp:
                    if 300 <= resp.status < 400:
                        raise Refused("the server answered with a redirect, which is not followed")
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > max_bytes:
                            raise Failed(f"the answer is larger than {max_bytes} bytes")
                    return Reply(resp.status, resp.content_type, bytes(body))
        except TimeoutError:
            raise Failed(f"no answer within {timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            refused = _refusal(e)
            if refused is not None:
                raise Refused(str(refused)) from None
            if isinstance(e, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
                raise Failed("the server's TLS certificate was not accepted") from None
            raise Failed(f"the server is unreachable ({type(e).__name__})") from None
