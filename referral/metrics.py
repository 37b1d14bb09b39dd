"""Prometheus metrics (prometheus-client), served at `GET /metrics` by `referral.api.metrics`.

What is counted: requests by route, method and status, and their latency by route; the code cache's
hits and misses; password hashes queued or running and the ones refused (per client: 429, queue
full: 503); rate-limit rejections by scope; database connections in use and the pool's maximum; per worker
(label `worker`, Sanic's "Srv 0"...), its resident memory, CPU time and whether Redis answers (REDIS_URL);
webhook delivery attempts by result, and the outbox's backlog (pending deliveries, the oldest one's age: read
from the database by the delivery loop, `referral.outbox.delivery`, the most recent worker's reading); the build;
and from the main process (`referral.workers`, through `app.shared_ctx`), the live server workers
and the restarts of crashed ones.

**Several workers.** `python -m referral` (and `sanic ... --workers N`) run the workers as separate
processes, each with its own counters. prometheus-client's multiprocess mode adds them up: before
the workers start, the main process points PROMETHEUS_MULTIPROC_DIR at a fresh directory (a temporary
one it removes at exit, or the operator's, emptied first); each worker writes its values to its own
files there, and `/metrics`, whichever worker answers it, sums every worker's files. Counters and
the histogram are summed; the gauges are `livesum` (the sum over the workers alive: a stopping worker
removes its gauge files). One worker (WORKERS=1, unless PROMETHEUS_MULTIPROC_DIR is set) and a single
process (tests, `sanic` without workers) keep them in memory. Counters and the histogram are updated
as things happen; the gauges are sampled, by each worker every `SAMPLE_SECONDS` and by the answering
worker just before it answers. A crashed worker's gauges leave the sums when the main process sees it dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from referral import __version__

if TYPE_CHECKING:  # no Sanic at run time: services count through this module
    from sanic import Request, Sanic
    from sanic.response import BaseHTTPResponse

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
SAMPLE_SECONDS = 1.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route took (404, or refused before routing)

IMPORTED_IN_MULTIPROCESS_MODE = MULTIPROC_DIR in os.environ
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
    "Password hashes refused at once: per_client (HASH_CONCURRENCY_PER_IP, 429), per_network "
    "(HASH_CONCURRENCY_PER_NETWORK, 429) or queue_full (HASH_QUEUE_MAX, 503).",
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

RESIDENT_MEMORY = Gauge(
    "referral_worker_resident_memory_bytes",
    "Resident memory of each server worker.",
    ["worker"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
CPU_SECONDS = Counter(
    "referral_worker_cpu_seconds", "CPU time (user and system) of each server worker.", ["worker"], registry=REGISTRY
)
REDIS_UP = Gauge(
    "referral_redis_up",
    "1 while Redis answers each worker, 0 while its breaker is open (only with REDIS_URL).",
    ["worker"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "referral_webhook_deliveries",
    "Webhook delivery attempts by result: delivered (2xx), retried (another attempt is due), failed (no retry left).",
    ["result"],
    registry=REGISTRY,
)
MAIL_DELIVERIES = Counter(
    "referral_mail_deliveries",
    "Mail attempts by result: delivered (the server took it), retried (another attempt is due), failed (an SMTP "
    "5xx, an expired reset link, or no retry left).",
    ["result"],
    registry=REGISTRY,
)
# The outbox's backlog is the database's, the same for every worker: the most recent worker's reading, not a sum.
OUTBOX_PENDING = Gauge(
    "referral_outbox_pending",
    "Deliveries waiting in the outbox (pending), read from the database every few seconds.",
    multiprocess_mode="livemostrecent",
    registry=REGISTRY,
)
OUTBOX_OLDEST_PENDING = Gauge(
    "referral_outbox_oldest_pending_seconds",
    "Age of the oldest event with a pending delivery (0 when none), read from the database every few seconds.",
    multiprocess_mode="livemostrecent",
    registry=REGISTRY,
)
BUILD = (__version__, platform.python_version(), version("sanic"))  # referral_build_info's labels
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_cpu_counted = [0.0]  # this process's CPU seconds already added to CPU_SECONDS

CODE_CACHE_HIT = CODE_CACHE.labels("hit")
CODE_CACHE_MISS = CODE_CACHE.labels("miss")
HASH_REJECTED_PER_CLIENT = HASH_REJECTIONS.labels("per_client")
HASH_REJECTED_PER_NETWORK = HASH_REJECTIONS.labels("per_network")
HASH_REJECTED_QUEUE_FULL = HASH_REJECTIONS.labels("queue_full")


def multiprocess_mode() -> bool:
    """True when this process writes its values to PROMETHEUS_MULTIPROC_DIR (a worker of `python -m referral`),
    False when they stay in its memory. prometheus-client decides it from the variable when it is first
    imported, as here: the main process sets it only after both were imported, for the workers it starts."""
    return IMPORTED_IN_MULTIPROCESS_MODE


def rate_limited(scope: str) -> None:
    RATE_LIMITED.labels(scope).inc()


def observe_request(request: Request, response: BaseHTTPResponse, seconds: float) -> None:
    """Count one answer (the response middleware calls this)."""
    route = UNMATCHED if request.route is None else "/" + request.route.path
    method = request.method if request.method in METHODS else "other"
    _answers(route, method, response.status).inc()
    _latency(route).observe(seconds)


@cache  # a child per route, method and status: a few hundred at most (routes and methods are bounded)
def _answers(route: str, method: str, status: int) -> Counter:
    return REQUESTS.labels(route, method, str(status))


@cache
def _latency(route: str) -> Histogram:
    return LATENCY.labels(route)


def outbox_delivery(channel: str, result: str) -> None:
    """One attempt's result on a channel (webhook, mail): delivered, retried or failed."""
    (WEBHOOK_DELIVERIES if channel == "webhook" else MAIL_DELIVERIES).labels(result).inc()


def outbox_backlog(pending: int, oldest: datetime | None) -> None:
    """The outbox's pending deliveries and the age of the oldest one's event (the delivery loop reads them)."""
    OUTBOX_PENDING.set(pending)
    OUTBOX_OLDEST_PENDING.set(0 if oldest is None else max((datetime.now(UTC) - oldest).total_seconds(), 0))


def cache_hit() -> None:
    CODE_CACHE_HIT.inc()


def cache_miss() -> None:
    CODE_CACHE_MISS.inc()


# ------------------------------------------------------------------------------------------- #
# Gauges, sampled
# ------------------------------------------------------------------------------------------- #


def sample(app: Sanic) -> None:
    """Set this worker's gauges from its hasher, its database pool, its Redis link and its process."""
    HASH_QUEUE.set(app.ctx.hasher.queued)
    usage = app.ctx.db.pool_usage()
    if usage is not None:
        DB_POOL_IN_USE.set(usage[0])
        DB_POOL_MAX.set(usage[1])
    worker = os.environ.get("SANIC_WORKER_IDENTIFIER") or "main"  # "main": no worker processes (tests)
    if app.ctx.redis is not None:
        REDIS_UP.labels(worker).set(app.ctx.redis.up)
    with contextlib.suppress(OSError):  # no /proc: not Linux
        RESIDENT_MEMORY.labels(worker).set(int(Path("/proc/self/statm").read_text().split()[1]) * PAGE_BYTES)
    times = os.times()
    cpu = times.user + times.system
    CPU_SECONDS.labels(worker).inc(max(cpu - _cpu_counted[0], 0))
    _cpu_counted[0] = cpu


class ScrapeTime:
    """Metrics read when /metrics is answered: the build, and the main process's counts (`app.shared_ctx`, set by
    `referral.workers.share_counts`; absent without worker processes)."""

    def __init__(self, app: Sanic) -> None:
        self.shared = app.shared_ctx

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "referral_build_info", "The running version, Python's and Sanic's.", labels=["version", "python", "sanic"]
        )
        build.add_metric(BUILD, 1)
        yield build
        restarts = getattr(self.shared, "worker_restarts", None)
        if restarts is not None:
            yield CounterMetricFamily(
                "referral_worker_restarts", "Server workers restarted after a crash.", value=restarts.value
            )
            yield GaugeMetricFamily(
                "referral_workers", "Server workers alive and serving.", value=self.shared.live_workers.value
            )


def forget_worker(pid: int) -> None:
    """In the main process, for a crashed worker: its gauges leave the sums (a stopping worker does it itself)."""
    if MULTIPROC_DIR in os.environ:
        multiprocess.mark_process_dead(pid)


def exposition(app: Sanic) -> bytes:
    """The metrics in Prometheus' text format: every worker's, in multiprocess mode."""
    sample(app)
    registry = REGISTRY
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    now = CollectorRegistry(auto_describe=False)
    now.register(ScrapeTime(app))
    return generate_latest(registry) + generate_latest(now)


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

    app.main_process_start(_prepare_directory)
    app.main_process_stop(_remove_directory)
    app.after_server_start(start_sampling)
    app.before_server_stop(stop_sampling)
    app.after_server_stop(_leave)


async def _sample_forever(app: Sanic) -> None:
    while True:
        sample(app)
        await asyncio.sleep(SAMPLE_SECONDS)


def _prepare_directory(app: Sanic) -> None:
    """Before the workers start: the directory they will write to, empty. One worker needs none: its
    values stay in its memory (cheaper on every request: no file writes), unless the operator named one."""
    given = os.environ.get(MULTIPROC_DIR)
    if not given and app.state.workers <= 1:
        return
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
