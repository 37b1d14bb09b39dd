"""The webhook channel: one signed POST of an event's stored payload to one endpoint.

Signing follows Standard Webhooks (the `standardwebhooks` package): `webhook-id` is the event's id, the
same on every attempt, so receivers drop duplicates by it; `webhook-timestamp` is the attempt's time.

Safety: the endpoint's host is resolved at each attempt and the address is checked (loopback, private,
link-local, unspecified, multicast or reserved addresses are refused unless WEBHOOK_ALLOW_PRIVATE), then
the request goes to that very address, so a DNS answer that changes between the check and the connect
(rebinding) cannot point it elsewhere: the URL carries the IP, the `Host` header the name, and for https
the name is given to TLS as the SNI and checked against the certificate (httpx's `sni_hostname`
extension). Limitation: httpx pools connections per (scheme, address, port), so two https endpoints on
one address may share a connection opened with the other's name. Proxies from the environment are
ignored (trust_env=False): a proxy would connect to an address we did not check.

The secret never leaves the `Webhook` signer: it is in no log line, error or metric.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime

import httpx
from standardwebhooks import Webhook

from referral.clock import utcnow
from referral.config import Settings

USER_AGENT = "referral-webhooks/1"
MAX_BODY_READ = 64 * 1024  # bytes of an answer's body read before its connection is dropped instead
MAX_ERROR_LENGTH = 500  # outbox_delivery.last_error


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt needs: the event's id and stored payload, and where it goes."""

    delivery_id: int
    event_id: str
    payload: str
    destination: str
    attempts: int  # attempts made before this one
    channel: str = "webhook"


@dataclass(frozen=True)
class Outcome:
    """An attempt's result: delivered, or not, with the status or the reason; `final` when retrying is
    pointless (an SMTP 5xx, an expired message): the delivery fails at once."""

    delivered: bool
    status: int | None = None
    error: str | None = None
    final: bool = False

    def describe(self) -> str:
        if self.status is not None:
            return f"status {self.status}"
        return self.error or "unknown error"


class RefusedAddress(Exception):
    """The endpoint resolves to an address webhooks may not reach (WEBHOOK_ALLOW_PRIVATE is off)."""


def is_forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for addresses inside the service's own network or host (an SSRF target), not the internet's."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    )


async def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for `host`: the first one the resolver gives, checked.

    RefusedAddress when it is forbidden; OSError (socket.gaierror) when the name does not resolve.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{host} does not resolve")
    address = ipaddress.ip_address(infos[0][4][0].split("%", 1)[0])
    if not allow_private and is_forbidden(address):
        raise RefusedAddress(f"{host} resolves to a refused address {address} (WEBHOOK_ALLOW_PRIVATE is off)")
    return str(address)


class WebhookChannel:
    """Sends attempts to webhook endpoints; one per worker, with one httpx client (its connection pool)."""

    name = "webhook"

    def __init__(
        self, secret: str, *, timeout: float, allow_private: bool, verify: ssl.SSLContext | bool = True
    ) -> None:
        """`verify`: how https endpoints' certificates are checked (certifi's CAs by default; tests give theirs)."""
        self._signer = Webhook(secret)
        self.timeout = timeout
        self.allow_private = allow_private
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=timeout,
            trust_env=False,
            verify=verify,
            headers={"user-agent": USER_AGENT},
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> WebhookChannel:
        """The channel WEBHOOK_SECRET, WEBHOOK_TIMEOUT and WEBHOOK_ALLOW_PRIVATE describe (WEBHOOK_URLS is set)."""
        assert settings.webhook_secret is not None, "the settings refuse WEBHOOK_URLS without WEBHOOK_SECRET"
        return cls(
            settings.webhook_secret, timeout=settings.webhook_timeout, allow_private=settings.webhook_allow_private
        )

    async def close(self) -> None:
        await self.client.aclose()

    def signed_headers(self, event_id: str, payload: str, when: datetime) -> dict[str, str]:
        return {
            "content-type": "application/json",
            "webhook-id": event_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": self._signer.sign(event_id, when, payload),
        }

    async def send(self, attempt: Attempt) -> Outcome:
        """Attempt one delivery within WEBHOOK_TIMEOUT (resolving included); never raises but on cancellation."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._post(attempt)
        except TimeoutError:
            return Outcome(False, error=f"timed out after {self.timeout:g} s")
        except RefusedAddress as refused:
            return Outcome(False, error=str(refused)[:MAX_ERROR_LENGTH])
        except (httpx.HTTPError, OSError, ValueError) as error:
            return Outcome(False, error=f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH])

    async def _post(self, attempt: Attempt) -> Outcome:
        url = httpx.URL(attempt.destination)
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await resolve(host, port, allow_private=self.allow_private)
        headers = self.signed_headers(attempt.event_id, attempt.payload, utcnow())
        headers["host"] = url.netloc.decode("ascii")
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        request = self.client.build_request(
            "POST",
            url.copy_with(host=address),
            content=attempt.payload.encode(),
            headers=headers,
            extensions=extensions,
        )
        # Streamed: only the status matters, and an endpoint's body could be huge. A short body is read to
        # its end, so that the connection goes back to the pool (one closed unread is closed for good).
        response = await self.client.send(request, stream=True)
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > MAX_BODY_READ:
                break
        await response.aclose()
        return Outcome(200 <= response.status_code < 300, status=response.status_code)
