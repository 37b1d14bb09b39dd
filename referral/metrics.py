"""Prometheus metrics (prometheus-client), served at `GET /metrics` by `referral.api.metrics`.

What is counted: requests by route, method and status, and their latency by route; the code cache's
hits and misses; password hashes queued or running and the ones refused (per client: 429, queue
full: 503); rate-limit rejections by scope; database connections in use and the pool's maximum.

**Several workers.** `python -m referral` (and `sanic ... --workers N`) run the workers as separate
processes, each with its own counters. prometheus-client's multiprocess mode adds them up: before
the workers start, the main process points PROMETHEUS_MULTIPROC_DIR at a fresh directory (a temporary
one it removes at exit, or the operator's, emptied first); each worker writes its values to its own
files there, and `/metrics`, whichever worker answers it, sums every worker's files. Counters and
the histogram are summed; the gauges are `livesum` (the sum over the workers alive: a stopping worker
removes its gauge files). A single process (tests, `sanic` without workers) keeps them in memory.
Nothing costly on the hot path: requests and cache lookups are counted in plain dicts and added to
the metrics by `flush`, and the gauges are sampled: each worker does both every `SAMPLE_SECONDS` (and
when it stops), the answering worker again just before it answers. Another worker's latest second may
so be missing from an answer, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from bisect import bisect_left
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:  # no Sanic at run time: services count through this module
    from sanic import Request, Sanic
    from sanic.response import BaseHTTPResponse

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
SAMPLE_SECONDS = 1.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route took (404, or refused before routing)

REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "referral_http_requests",
    "HTTP requests answered, by route (its path pattern), method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "referral_http_request_duration_seconds",
    "Time from the request's headers to its answer, by route.",
    ["route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CODE_CACHE = Counter(
    "referral_code_cache_lookups",
    "getcode lookups in the code cache, by result: hit or miss (the database was asked).",
    ["result"],
    registry=REGISTRY,
)
HASH_QUEUE = Gauge(
    "referral_password_hash_queue",
    "Password hashes queued or running, all workers together.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
HASH_REJECTIONS = Counter(
    "referral_password_hash_rejections",
    "Password hashes refused at once: per_client (HASH_CONCURRENCY_PER_IP, 429) or queue_full (HASH_QUEUE_MAX, 503).",
    ["reason"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "referral_rate_limit_rejections",
    "Requests refused by a rate limit (429), by scope: the per-IP scope of the route, user or login.",
    ["scope"],
    registry=REGISTRY,
)
DB_POOL_IN_USE = Gauge(
    "referral_db_pool_connections_in_use",
    "Database connections handed out, all workers together.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
DB_POOL_MAX = Gauge(
    "referral_db_pool_connections_max",
    "The most database connections the workers' pools may open, all together.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

CODE_CACHE_HIT = CODE_CACHE.labels("hit")  # counted through cache_hit() and cache_miss(), added by flush()
CODE_CACHE_MISS = CODE_CACHE.labels("miss")
HASH_REJECTED_PER_CLIENT = HASH_REJECTIONS.labels("per_client")
HASH_REJECTED_QUEUE_FULL = HASH_REJECTIONS.labels("queue_full")


def multiprocess_mode() -> bool:
    """True when this process writes its values to PROMETHEUS_MULTIPROC_DIR (decided when prometheus-client
    was imported: a worker of `python -m referral`), False when they stay in its memory."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def rate_limited(scope: str) -> None:
    RATE_LIMITED.labels(scope).inc()


# ------------------------------------------------------------------------------------------- #
# The hot path: requests and cache lookups counted as plain numbers, added to the metrics by `flush`
# ------------------------------------------------------------------------------------------- #

# A prometheus-client update takes a lock and, in multiprocess mode, writes to a memory-mapped file:
# several per request. Counting in dicts and lists here and adding the sums at most once a second costs
# a few dict operations instead.
_requests: dict[tuple[str | None, str, int], int] = {}  # (route path or None, method, status) -> answers
_latency: dict[str | None, list[float]] = {}  # route -> answers per bucket (the last: +Inf), then the sum
_cache_lookups = [0, 0]  # hits, misses


def observe_request(request: Request, response: BaseHTTPResponse, seconds: float) -> None:
    """Count one answer (the response middleware calls this)."""
    route = request.route
    path = route.path if route is not None else None
    method = request.method
    key = (path, method if method in METHODS else "other", response.status)
    _requests[key] = _requests.get(key, 0) + 1
    latency = _latency.get(path)
    if latency is None:
        latency = _latency[path] = [0.0] * (len(LATENCY_BUCKETS) + 2)
    latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
    latency[-1] += seconds


def cache_hit() -> None:
    _cache_lookups[0] += 1


def cache_miss() -> None:
    _cache_lookups[1] += 1


def flush() -> None:
    """Add what this process counted since the last flush to the metrics (in multiprocess mode, to its files)."""
    counted = list(_requests.items())
    _requests.clear()
    for (path, method, status), count in counted:
        REQUESTS.labels(_route_label(path), method, str(status)).inc(count)
    timed = list(_latency.items())
    _latency.clear()
    for path, latency in timed:
        histogram = LATENCY.labels(_route_label(path))
        # Histogram.observe() adds one answer to its bucket and to the sum; these add many at once.
        for bucket, count in zip(histogram._buckets, latency, strict=False):
            if count:
                bucket.inc(count)
        histogram._sum.inc(latency[-1])
    hits, misses = _cache_lookups
    _cache_lookups[:] = [0, 0]
    if hits:
        CODE_CACHE_HIT.inc(hits)
    if misses:
        CODE_CACHE_MISS.inc(misses)


def _route_label(path: str | None) -> str:
    return UNMATCHED if path is None else "/" + path


# ------------------------------------------------------------------------------------------- #
# Gauges, sampled
# ------------------------------------------------------------------------------------------- #


def sample(app: Sanic) -> None:
    """Flush this worker's counts and set its gauges from its hasher and its database pool."""
    flush()
    HASH_QUEUE.set(app.ctx.hasher.queued)
    usage = app.ctx.db.pool_usage()
    if usage is not None:
        DB_POOL_IN_USE.set(usage[0])
        DB_POOL_MAX.set(usage[1])


def exposition(app: Sanic) -> bytes:
    """The metrics in Prometheus' text format: every worker's, in multiprocess mode."""
    sample(app)
    if not multiprocess_mode():
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


# ------------------------------------------------------------------------------------------- #
# Wiring: listeners of the main process (the directory) and of each worker (the sampler)
# ------------------------------------------------------------------------------------------- #

_made_directory: list[str] = []  # the temporary directory this main process made, to remove at exit


def install(app: Sanic) -> None:
    """Register the listeners that keep the metrics: the shared directory, and each worker's sampler."""
    sampling: list[asyncio.Task[None]] = []

    async def start_sampling(app: Sanic) -> None:
        sampling.append(asyncio.create_task(_sample_forever(app), name="metrics-sampler"))

    async def stop_sampling(app: Sanic) -> None:
        while sampling:
            task = sampling.pop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        flush()  # the last counts of a stopping worker are kept

    app.main_process_start(_prepare_directory)
    app.main_process_stop(_remove_directory)
    app.after_server_start(start_sampling)
    app.before_server_stop(stop_sampling)
    app.after_server_stop(_leave)


async def _sample_forever(app: Sanic) -> None:
    while True:
        sample(app)
        await asyncio.sleep(SAMPLE_SECONDS)


def _prepare_directory(_app: Sanic) -> None:
    """Before the workers start: the directory they will write to, empty."""
    given = os.environ.get(MULTIPROC_DIR)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # a previous run's values would be added to this one's
            stale.unlink(missing_ok=True)
        return
    made = tempfile.mkdtemp(prefix="referral-metrics-")
    _made_directory.append(made)
    os.environ[MULTIPROC_DIR] = made


def _remove_directory(_app: Sanic) -> None:
    while _made_directory:
        made = _made_directory.pop()
        shutil.rmtree(made, ignore_errors=True)
        if os.environ.get(MULTIPROC_DIR) == made:
            del os.environ[MULTIPROC_DIR]


async def _leave(_app: Sanic) -> None:
    """A stopping worker takes its gauges out of the sums."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())
