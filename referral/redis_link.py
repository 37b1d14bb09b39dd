"""REDIS_URL: one connection pool for the code cache and the rate limits, behind a circuit breaker.

Redis makes the workers and instances share what they know; it is never needed to answer. Every use
has a way round it (rate limits: counters in this process; the code cache: the database), so a Redis
that is down or slow costs at most one short timeout, never a 5xx:

- calls time out after REDIS_TIMEOUT_MS (connect and reply) and are not retried, except once at once
  on a broken connection (a pooled connection that Redis closed while it was idle);
- the first failure opens the breaker: one warning, and nothing waits for Redis any more;
- a background task then pings Redis every `RETRY_INTERVAL` seconds; once it answers, the recovery
  steps run (the code cache sends the invalidations it could not) and the breaker closes, with one
  info line. No request ever probes: a dead Redis is never on a request's path twice.

Every key begins with SERVICE_NAME and a colon, so services (or test runs) can share one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger("referral.redis")

TIMEOUT = 0.5  # seconds (REDIS_TIMEOUT_MS): Redis answers in well under a millisecond when it is well; an
# event loop blocked that long also counts, so much shorter would trip the breaker on a busy machine
RETRY_INTERVAL = 1.0  # seconds between pings while Redis is down
OUTAGE_MESSAGE = "Redis is unavailable"
BACK_MESSAGE = "Redis is available again"
# what a call to Redis may raise when Redis is down, slow or refusing (OOM, read-only replica...)
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)

RecoveryStep = Callable[[float], Awaitable[None]]


class RedisLink:
    """The pool (`client`, `pool`), the key `prefix`, and the breaker: `up`, `failed(error)`."""

    def __init__(
        self, url: str, *, prefix: str, timeout: float = TIMEOUT, retry_interval: float = RETRY_INTERVAL
    ) -> None:
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.pool = ConnectionPool.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # redis-py's default retries 10 times with backoff: seconds of waiting on a dead Redis
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self.client = Redis(connection_pool=self.pool)
        self.down_since: float | None = None  # time.time() of the failure that opened the breaker
        self._recovery: asyncio.Task[None] | None = None
        self._recovery_steps: list[RecoveryStep] = []

    @property
    def up(self) -> bool:
        """False from a failure until Redis answers again and the recovery steps are done."""
        return self.down_since is None

    def on_recovery(self, step: RecoveryStep) -> None:
        """Run `step(down_since)` once Redis answers again, before it is used; a Redis error retries later."""
        self._recovery_steps.append(step)

    def failed(self, error: BaseException) -> None:
        """A call failed: open the breaker (one warning per outage) and start pinging in the background."""
        if self.down_since is not None:
            return
        self.down_since = time.time()
        log.warning(
            "%s (%s): rate limits count in this process and getcode reads the database until it is back; "
            "trying again every %g s",
            OUTAGE_MESSAGE,
            describe(error),
            self.retry_interval,
        )
        # a context of its own: not the failing request's (its request id would be on the recovery line)
        self._recovery = asyncio.get_running_loop().create_task(
            self._recover(), name="redis-recovery", context=contextvars.Context()
        )

    async def check(self) -> None:
        """At start-up: a Redis that does not answer is reported now rather than at the first request."""
        try:
            await self.client.ping()
        except REDIS_ERRORS as error:
            self.failed(error)

    async def _recover(self) -> None:
        down_since = self.down_since
        assert down_since is not None
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                await self.pool.disconnect()  # connections from before the outage are broken or stale
                await self.client.ping()
                for step in self._recovery_steps:
                    await step(down_since)
            except REDIS_ERRORS:
                continue
            break
        # no await since the last step finished: nothing could slip in between it and this
        self.down_since = None
        self._recovery = None
        log.info(
            "%s after %.1f s: rate limits and the code cache are shared again", BACK_MESSAGE, time.time() - down_since
        )

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        await self.client.aclose()
        await self.pool.disconnect()


def describe(error: BaseException) -> str:
    """The error in one short line (redis-py's messages name the address, never the password)."""
    text = str(error).strip() or "no message"
    return f"{type(error).__name__}: {text}"
