"""A real SMTP server for tests (aiosmtpd, in a thread of its own): it keeps what it receives, and can
refuse recipients with a chosen answer, be stopped and started again on the same port."""

from __future__ import annotations

import asyncio
import ssl
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support import free_port

WAIT_SECONDS = 15.0


class SmtpServer:
    """Receives messages at 127.0.0.1:`port`; `refuse_with` (e.g. "550 no such user") answers RCPT instead."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        """With `tls`, the server offers STARTTLS and refuses mail before it (`require_starttls`)."""
        self.tls = tls
        self.port = free_port()
        self.received: list[EmailMessage] = []
        self.refuse_with: str | None = None
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802 (aiosmtpd's hook name)
        if self.refuse_with:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(message)
        return "250 Message accepted"

    def start(self) -> None:
        tls = {"tls_context": self.tls, "require_starttls": True} if self.tls else {}
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **tls)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.received)

    async def wait_for(self, count: int = 1, seconds: float = WAIT_SECONDS) -> list[EmailMessage]:
        """The messages received once there are `count`, waiting on the app's loop (`client.run(...)`) so that
        its delivery goes on meanwhile; fails after `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    if len(got := self.messages()) >= count:
                        return got
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"{count} messages expected, {len(self.messages())} received") from None
