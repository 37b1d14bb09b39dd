"""The webhook rows of `make bench`: what delivering events costs the API, and how fast a backlog drains.

- Side by side in interleaved rounds, on the main database: the service without WEBHOOK_URLS, with a
  receiver that answers 204 at once, and with a receiver that hangs (every attempt held until
  WEBHOOK_TIMEOUT, WEBHOOK_CONCURRENCY of them at a time, behind a backlog made before the rounds):
  referral registration without and with webhooks, and cached getcode on all three.
- The drain, on the small database: one worker (WEBHOOK_CONCURRENCY=8, WEBHOOK_RETRY_SCHEDULE=500ms,1s,2s);
  10,000 events are queued while its receiver is down and tried against the refused port for a second,
  then the receiver starts; timed from the receiver's start until no delivery is pending.

The receivers are `python -m bench.receiver` (`bench/receiver.py`).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bench.load import LoadResult
from bench.rows import WEBHOOKS_HANG_HOT, WEBHOOKS_OFF_HOT, WEBHOOKS_OFF_REGISTER, WEBHOOKS_ON_HOT, WEBHOOKS_ON_REGISTER
from bench.servers import Server
from referral.clock import utcnow
from referral.config import load_settings
from referral.db.database import create_database
from referral.db.tables import outbox_delivery
from referral.outbox.record import record_event

if TYPE_CHECKING:
    from bench.run import Bench

DRAIN_EVENTS = 10_000
DRAIN_LIMIT_SECONDS = 120.0  # the target is 60 s; past twice that the row reports what was left
DOWN_SECONDS = 1.0  # the drain's receiver is down this long after the events are committed
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class WebhookResults:
    drain_events: int
    rows: dict[str, LoadResult] = field(default_factory=dict)
    drain_seconds: float | None = None  # None: still pending after DRAIN_LIMIT_SECONDS
    drain_states: dict[str, int] = field(default_factory=dict)  # the drain's deliveries by state at the end
    hanging_pending: int = 0  # deliveries the hanging receiver's service still had pending after the rounds

    @property
    def drain_rate(self) -> float:
        delivered = self.drain_states.get("delivered", 0)
        return delivered / self.drain_seconds if self.drain_seconds else 0.0


def webhook_env(receiver: Server, **changes: str) -> dict[str, str]:
    return {
        "WEBHOOK_URLS": f"{receiver.url}/hook",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_ALLOW_PRIVATE": "on",  # the receiver is on 127.0.0.1
        **changes,
    }


def receiver(bench: Bench, name: str, *, hang: bool = False) -> Server:
    env = {**bench.base_env(), **({"BENCH_RECEIVER_HANG": "1"} if hang else {})}
    return Server(name, "bench.receiver", env, bench.o.workdir)


async def _states(url: str, destination: str) -> dict[str, int]:
    db = create_database(load_settings(env={}, database_url=url))
    await db.connect()
    try:
        d = outbox_delivery.c
        query = sa.select(d.state, sa.func.count()).where(d.destination == destination).group_by(d.state)
        return {row[0]: row[1] for row in await db.fetch_all(query)}
    finally:
        await db.disconnect()


async def _queue(url: str, destination: str, count: int) -> None:
    """`count` events with a delivery each to `destination`, recorded as the service records them, in one
    transaction (they become due together)."""
    settings = load_settings(env={}, database_url=url, webhook_urls=destination, webhook_secret=SECRET)
    db = create_database(settings)
    await db.connect()
    try:
        async with db.transaction():
            for n in range(count):
                data = {"id": n, "email": f"drain{n}@example.com", "referrer_id": 1, "code": "bench0000001"}
                await record_event(db, "referral.registered", data, now=utcnow())
    finally:
        await db.disconnect()


def measure(
    bench: Bench,
    main_url: str,
    small_url: str,
    hot: dict[str, int],
    register_code: str,
    *,
    drain_events: int = DRAIN_EVENTS,
) -> WebhookResults:
    results = WebhookResults(drain_events=drain_events)
    prompt, hanging = receiver(bench, "receiver"), receiver(bench, "receiver-hangs", hang=True)
    off = bench.service("service-webhooks-off", main_url)
    on = bench.service("service-webhooks-on", main_url, **webhook_env(prompt))
    hang = bench.service("service-webhooks-hang", main_url, **webhook_env(hanging))
    servers = {
        "receiver": prompt,
        "receiver, hangs": hanging,
        "service, no WEBHOOK_URLS": off,
        "service, WEBHOOK_URLS": on,
        "service, WEBHOOK_URLS, receiver hangs": hang,
    }
    print(f"webhooks: {', '.join(servers)}", flush=True)
    with bench.serving(servers):
        for server in (off, on, hang):
            bench.warm(server, "getcode", **hot)
        bench.load(hang, "register", connections=4, code=register_code, prefix=bench.prefix())  # its backlog
        registering = {"code": register_code, "prefix": bench.prefix}
        results.rows = bench.compare(
            [
                (WEBHOOKS_OFF_REGISTER, off, "register", registering),
                (WEBHOOKS_ON_REGISTER, on, "register", registering),
                (WEBHOOKS_OFF_HOT, off, "getcode", hot),
                (WEBHOOKS_ON_HOT, on, "getcode", hot),
                (WEBHOOKS_HANG_HOT, hang, "getcode", hot),
            ]
        )
        results.hanging_pending = asyncio.run(_states(main_url, f"{hanging.url}/hook")).get("pending", 0)

    down = receiver(bench, "receiver-drain")
    destination = f"{down.url}/hook"
    drainer = bench.service(
        "service-drain",
        small_url,
        workers=1,
        **webhook_env(down, WEBHOOK_CONCURRENCY="8", WEBHOOK_RETRY_SCHEDULE="500ms,1s,2s"),
    )
    print(f"webhooks: {drain_events:,} events queued while the receiver is down, then drained", flush=True)
    with bench.serving({"service, drain": drainer}):
        asyncio.run(_queue(small_url, destination, drain_events))
        time.sleep(DOWN_SECONDS)
        started = time.monotonic()
        with bench.serving({"receiver, drain": down}):
            while time.monotonic() - started < DRAIN_LIMIT_SECONDS:
                results.drain_states = asyncio.run(_states(small_url, destination))
                if not results.drain_states.get("pending"):
                    results.drain_seconds = time.monotonic() - started
                    break
                time.sleep(0.2)
    rate = f"{results.drain_rate:,.0f} deliveries/s" if results.drain_seconds else "not drained"
    print(f"  drained in {results.drain_seconds or float('nan'):.1f} s ({rate}): {results.drain_states}", flush=True)
    return results
