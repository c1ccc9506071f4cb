"""URL rules shared by the trusted-client configuration and the fhirServer allow-list.

Base URLs are compared exactly after a light normalisation (scheme and host lower-cased,
default port and trailing slashes dropped), so an allow-list cannot be sidestepped by spelling.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_base_url(url: str) -> str | None:
    """`url` in canonical form, or None when it is not a plain http(s) base URL.

    Refused: other schemes, no host, user info, query, fragment, whitespace or control chars.
    """
    if not isinstance(url, str) or not url or any(c.isspace() or ord(c) < 32 for c in url):
        return None
    if "?" in url or "#" in url or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def is_loopback(url: str) -> bool:
    """True when `url` names this machine (localhost or a loopback address)."""
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
