"""Who may reach a server: the bind rule and the API-key comparison, shared by ``lmforge serve`` and
``lmforge ui``.

The rule: a server binds to a loopback address (127.0.0.0/8, ::1, localhost) unless API keys
are configured; binding anywhere else without a key is refused before anything starts.
"""

from __future__ import annotations

import hmac
import ipaddress

from lmforge.errors import UserError


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (IPv4 127.0.0.0/8, IPv6 ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: list[str], *, where: str = "--host") -> None:
    """UserError when ``host`` is not loopback and no API key is configured."""
    if not is_loopback(host) and not keys:
        raise UserError(f"binding {host} makes the server reachable from other machines, and no API key is set",
                        where=where, hint="set --api-key-env VAR (VAR holding comma-separated keys), "
                                          "or bind 127.0.0.1")


def key_matches(token: str, keys: list[str]) -> bool:
    """Whether ``token`` equals one of ``keys`` (constant-time comparison)."""
    token = token.strip()
    return bool(token) and any(hmac.compare_digest(token.encode(), k.encode()) for k in keys)
