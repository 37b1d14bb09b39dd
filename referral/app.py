"""The application factory: `sanic referral.app:create_app --factory`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sanic import Sanic

from referral import logs, metrics
from referral.api import api
from referral.api.access import TimedRequest, response_finisher
from referral.api.docs import ApiDocs
from referral.api.metrics import bp as metrics_route
from referral.api.problems import ProblemErrorHandler
from referral.cache import CodeCache
from referral.config import Settings, load_settings, warn_if_insecure
from referral.db.database import ReferralDatabase, create_database
from referral.lifecycle import ignore_stop_signals, in_worker_process, preflight, stop_once, supervise_workers
from referral.outbox.delivery import Deliveries
from referral.ratelimit import RateLimits
from referral.redis_link import RedisLink
from referral.security import IntegrationKeys, NetworkSlots, PasswordHasher
from referral.services.codes import CodeService
from referral.services.passwords import common_passwords
from referral.services.referrals import ReferralService
from referral.services.resets import PasswordResets
from referral.services.users import UserService
from referral.workers import share_counts

SANIC_CONFIG_FILE = Path(__file__).resolve().parent.parent / "sanic.cfg"


@dataclass
class AppContext:
    """`app.ctx`: the long-lived objects; handlers reach them as `services(request).codes` etc."""

    settings: Settings
    db: ReferralDatabase
    cache: CodeCache
    rate_limits: RateLimits
    hasher: PasswordHasher
    users: UserService
    resets: PasswordResets
    codes: CodeService
    referrals: ReferralService
    integration_keys: IntegrationKeys
    redis: RedisLink | None = None  # REDIS_URL: the code cache and the rate limits share it
    trusts_forwarding: bool = False  # Sanic's proxy settings: set when the server starts (`client_ip`)
    deliveries: Deliveries | None = None  # the outbox's delivery loop, while the server runs


ReferralApp = Sanic[Any, AppContext]


def create_app(*cli_args: Any, settings: Settings | None = None) -> ReferralApp:
    """Build the app. Sanic's CLI passes its arguments: in its main process the start is checked first
    (`referral.lifecycle.preflight`: a bad setting, or a database not at the code's migration, stops it)."""
    if settings is None and cli_args and not in_worker_process():
        settings = preflight()
    settings = settings or load_settings()
    db = create_database(settings)
    redis = (
        RedisLink(settings.redis_url, prefix=settings.service_name, timeout=settings.redis_timeout_ms / 1000)
        if settings.redis_url
        else None
    )
    cache = CodeCache(
        ttl=settings.code_cache_ttl, maxsize=settings.code_cache_size, redis=redis, secret_key=settings.secret_key
    )
    rate_limits = RateLimits(settings, redis)
    hasher = PasswordHasher(
        rounds=settings.bcrypt_rounds,
        per_client=settings.hash_concurrency_per_ip,
        queue_max=settings.hash_queue_max,
        networks=NetworkSlots(settings.hash_concurrency_per_network, redis),
        enabled=settings.rate_limit,
    )
    ctx = AppContext(
        settings=settings,
        db=db,
        cache=cache,
        rate_limits=rate_limits,
        hasher=hasher,
        users=UserService(db, settings, rate_limits, hasher, cache),
        resets=PasswordResets(db, settings, hasher),
        codes=CodeService(db, cache),
        referrals=ReferralService(db, hasher, secret_key=settings.secret_key),
        integration_keys=IntegrationKeys(settings.integration_key_list),
        redis=redis,
    )
    logs.configure_logging(settings.log_format)
    app: ReferralApp = Sanic(
        "referral", ctx=ctx, error_handler=ProblemErrorHandler(), request_class=TimedRequest, configure_logging=False
    )
    if SANIC_CONFIG_FILE.is_file():
        app.update_config(SANIC_CONFIG_FILE)
        app.config.load_environment_vars("SANIC_")
    app.config.ACCESS_LOG = False  # Sanic's would log the query string (getcode's email); ours is referral.access
    app.blueprint(api)
    # One response middleware for every answer: X-Request-ID, the request's metrics, the access line.
    observe = metrics.observe_request if settings.metrics else None
    app.on_response(response_finisher(access=settings.access_log, observe=observe))
    if settings.metrics:
        app.blueprint(metrics_route)
        metrics.install(app)
    # Only our docs extension: sanic-ext's built-in dependency injection dispatches a signal on every
    # request (a third of a cached read's throughput, bench/RESULTS.md); handlers use `app.ctx`.
    app.extend(built_in_extensions=False, extensions=[ApiDocs])
    app.before_server_start(_open_resources)
    app.after_server_stop(_close_resources)
    app.after_server_start(_start_deliveries)
    app.before_server_stop(_stop_deliveries)
    app.main_process_start(share_counts)
    app.main_process_ready(supervise_workers)  # stop signals and crashed workers: referral.lifecycle, referral.workers
    if in_worker_process():
        ignore_stop_signals()
        app.after_server_start(stop_once)
    return app


async def _open_resources(app: ReferralApp) -> None:
    warn_if_insecure(app.ctx.settings)
    config = app.config
    app.ctx.trusts_forwarding = bool(config.FORWARDED_SECRET or config.REAL_IP_HEADER or config.PROXIES_COUNT)
    await app.ctx.db.connect()
    await app.ctx.hasher.warm_up()
    await asyncio.to_thread(common_passwords)  # folded once, before the first sign-up needs them
    if app.ctx.redis is not None:
        await app.ctx.redis.check()  # a warning at start when Redis does not answer; the service starts


async def _close_resources(app: ReferralApp) -> None:
    if app.ctx.redis is not None:
        await app.ctx.redis.close()
    await app.ctx.db.disconnect()


async def _start_deliveries(app: ReferralApp) -> None:
    """Every worker delivers the outbox: mail always, webhooks with WEBHOOK_URLS."""
    deliveries = Deliveries.for_settings(app.ctx.db, app.ctx.settings)
    app.ctx.deliveries = deliveries
    # Recording (`referral.outbox.record`) calls the database's hook after it writes an event or a message:
    # the loop wakes at once instead of at its next poll.
    app.ctx.db.on_event_recorded = deliveries.nudge
    deliveries.start()


async def _stop_deliveries(app: ReferralApp) -> None:
    """Attempts in flight may finish within the graceful-shutdown time; what is left stays pending."""
    deliveries, app.ctx.deliveries = app.ctx.deliveries, None
    if deliveries is not None:
        app.ctx.db.on_event_recorded = None
        await deliveries.stop(grace=float(app.config.GRACEFUL_SHUTDOWN_TIMEOUT))
