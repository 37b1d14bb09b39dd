"""The per-IP limit's counter in process: the cost of one hit by how many clients are in the window.

limits' own MemoryStorage against the service's `InProcessCounters`, both under limits'
SlidingWindowCounterRateLimiter, in this process (no server): each client hits once, then hits are
timed spread over all of them, the event loop turning between hits as in a server (MemoryStorage
sweeps its keys in a task it starts again after each hit).
"""

from __future__ import annotations

import asyncio
import time

from limits import parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from referral.ratelimit import InProcessCounters

CLIENTS = (1, 1_000, 10_000, 50_000)
UNREACHED = parse("100000000/minute")


async def _cost_us(storage: Storage, clients: int, hits: int) -> float:
    limiter = SlidingWindowCounterRateLimiter(storage)
    addresses = [f"10.{n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(clients)]
    for address in addresses:
        await limiter.hit(UNREACHED, "ip", "getcode", address)
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    for n in range(hits):
        await limiter.hit(UNREACHED, "ip", "getcode", addresses[n % clients])
        await asyncio.sleep(0)
    return (time.perf_counter() - started) / hits * 1e6


def measure(*, smoke: bool = False) -> dict[int, tuple[float, float]]:
    """Clients in the window -> (us a hit with limits' MemoryStorage, us a hit with InProcessCounters)."""
    found: dict[int, tuple[float, float]] = {}
    for clients in CLIENTS[:2] if smoke else CLIENTS:
        library = asyncio.run(_cost_us(MemoryStorage(), clients, hits=200 if clients > 1_000 else 2_000))
        ours = asyncio.run(_cost_us(InProcessCounters(), clients, hits=20_000))
        found[clients] = (library, ours)
        print(f"  rate-limit counter, {clients:,} clients: limits {library:.1f}, ours {ours:.1f} us a hit", flush=True)
    return found
