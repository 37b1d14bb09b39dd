"""`make bench [ARGS="--pg --users N ..."]`: seed, serve, load with wrk, report against the ceilings.

One run measures, with the service's production settings (`python -m referral`, bcrypt cost 12,
rate limits on with limits above what the benchmark sends, metrics and request ids on, the access
log off and on), each row side by side with its ceiling in the same run:

- cached getcode against bare Sanic (`bench.ceiling`), and with the access log on against a bare
  Sanic writing the same line through the service's logging set-up; what rate limiting, metrics and
  the access log each cost on it (the same server with one feature switched);
- getcode with the cache off and the 100-row list page against bare Sanic + the driver answering the
  same SQL (`bench.dbceiling`), and on PostgreSQL registration and update_code against the same
  statements in one transaction;
- logins during a storm against bcrypt's limit (cores / time of one cost-12 hash, timed here), and
  getcode's p99 during the storm against quiet;
- getcode at a small and the full user count, a list page at 1,000 and 100,000 referrals, peak RSS,
  and on PostgreSQL one and two workers with the in-process and the Redis code cache.
- webhooks (`bench.webhooks`): registration and cached getcode with and without WEBHOOK_URLS, getcode
  while the receiver hangs, and how fast 10,000 events queued while the receiver was down drain.

Rows compared with each other are measured in interleaved rounds (each server in turn, `--rounds`
times) and reported as the median round. Results go to bench/RESULTS.md (the section of this
backend) and a PNG chart beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import limiter, report, webhooks
from bench.ceiling import service_access_log
from bench.load import LoadResult, Wrk, ensure_wrk
from bench.rows import (
    ALL_OFF,
    AUTH,
    CEILING,
    CEILING_WITH_EXT,
    DB_GETCODE,
    DB_LIST,
    DB_REGISTER,
    DB_UPDATE,
    HASH_SAMPLES,
    HOT,
    HOT_LOGGED,
    LIST,
    LOG_CEILING,
    NOCACHE,
    ONLY_ACCESS_LOG,
    ONLY_METRICS,
    ONLY_RATE_LIMIT,
    PRODUCTION,
    REGISTER,
    REGISTER_LIMITED,
    UPDATE,
)
from bench.seed import (
    BENCH_PASSWORD,
    SeedPlan,
    code_of,
    email_of,
    migrate,
    seed_pg,
    seed_sqlite,
    shared_password_hash,
)
from bench.servers import Server, start_all
from referral.config import Settings, load_settings, variable_name
from referral.security import HASHING_NICENESS, TokenSubject, _hash_sync, issue_token
from tests.support import ROOT, ThrowawayPostgres

BENCH_DIR = Path(__file__).resolve().parent
MAX_USERS = 1_000_000
SMALL_REFERRER, BIG_REFERRER, REGISTER_CODE_OWNER, LIMITED_CODE_OWNER = 1, 2, 3, 4
LIMITED_CODE_MAX_USES = 1_000_000  # the most a code may have: the bench never uses it up
FORGOT_SAMPLES = 50  # requests each for emails with and without an account
ISOLATION_DELAY_MS = 2  # each isolation connection waits 2 ms between requests: a steady load, not flat out
GIT = shutil.which("git")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # the tests use db 15


def available(setting: str) -> bool:
    """Whether this tree's service has `setting` (a variable name); unknown variables are ignored by it."""
    return setting.lower() in Settings.model_fields


@dataclass
class Options:
    backend: str
    users: int
    small_users: int
    referrals: int
    small_referrals: int
    seconds: float
    rounds: int
    connections: int
    storm_connections: int
    isolation_connections: int
    bcrypt_rounds: int
    workers: int
    redis: bool
    redis_url: str
    scaling: bool
    out: Path
    chart: Path
    workdir: Path
    pg_admin_url: str
    keep: bool
    smoke: bool


@dataclass
class Results:
    options: Options
    started: datetime
    tree: str = ""
    rows: dict[str, LoadResult] = field(default_factory=dict)  # the endpoint table
    rounds: dict[str, list[LoadResult]] = field(default_factory=dict)  # every round of each row
    features: dict[str, LoadResult] = field(default_factory=dict)  # cached getcode, one feature switched
    todo: dict[str, str] = field(default_factory=dict)  # rows this tree cannot measure yet, and why
    quiet: LoadResult | None = None
    storm: LoadResult | None = None
    storm_auth: LoadResult | None = None
    hash_seconds: float = 0.0
    hash_seconds_niced: float = 0.0  # the same at the service's hashing priority: what other load leaves it
    scale_getcode: dict[int, LoadResult] = field(default_factory=dict)
    scale_list: dict[int, LoadResult] = field(default_factory=dict)
    scale_stats: dict[int, LoadResult] = field(default_factory=dict)
    scaling: dict[str, dict[str, LoadResult]] = field(default_factory=dict)  # configuration -> row -> result
    scaling_note: str = ""
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    limiter_us: dict[int, tuple[float, float]] = field(default_factory=dict)  # clients -> (limits', ours)
    webhooks: webhooks.WebhookResults | None = None
    forgot_ms: tuple[float, float] | None = None  # /user/password/forgot medians: (an account, none)
    seed_seconds: float = 0.0
    run_seconds: float = 0.0

    @property
    def bcrypt_limit(self) -> float:
        """Logins a second bcrypt allows on this machine: every core hashing, nothing else running."""
        return (os.cpu_count() or 1) / self.hash_seconds if self.hash_seconds else 0.0


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="make bench ARGS=...", description=__doc__.split("\n")[0])
    parser.add_argument("--pg", action="store_true", help="PostgreSQL (a throwaway database) instead of SQLite")
    parser.add_argument("--users", type=int, default=MAX_USERS, help=f"seeded users, 100,000 to {MAX_USERS:,}")
    parser.add_argument("--small-users", type=int, default=1_000, help="users of the small database (scale)")
    parser.add_argument("--referrals", type=int, default=100_000, help="referrals of the big referrer")
    parser.add_argument("--small-referrals", type=int, default=1_000, help="referrals of the small referrer")
    parser.add_argument("--seconds", type=float, default=5, help="load per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the compared rows (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections per endpoint")
    parser.add_argument("--workers", type=int, default=1, help="WORKERS of the service (the scaling table: 1 to N)")
    parser.add_argument("--redis", action="store_true", help="serve with REDIS_URL (the code cache and limits)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="Redis database for --redis (flushed first)")
    parser.add_argument(
        "--scaling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the workers and Redis table (default: on PostgreSQL only)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 1 s runs: does the bench still work?")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md", help="markdown file to update")
    parser.add_argument("--workdir", type=Path, default=BENCH_DIR / "out", help="databases, logs, tokens")
    parser.add_argument("--keep", action="store_true", help="keep the seeded databases")
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL database to connect to while creating the throwaway ones (env BENCH_PG_URL)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.users, args.small_users, args.referrals, args.small_referrals = 60, 20, 300, 30
        args.seconds, args.connections, args.rounds = 1, 4, 1
    elif not 100_000 <= args.users <= MAX_USERS:
        parser.error(f"--users must be between 100,000 and {MAX_USERS:,} (the targets are set at 100,000 or more)")
    if args.workers < 1 or args.rounds < 1:
        parser.error("--workers and --rounds must be at least 1")
    backend = "pg" if args.pg else "sqlite"
    return Options(
        backend=backend,
        users=args.users,
        small_users=min(args.small_users, args.users),
        referrals=args.referrals,
        small_referrals=args.small_referrals,
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        storm_connections=8,
        isolation_connections=min(args.connections, 4),
        bcrypt_rounds=4 if args.smoke else 12,  # the smoke run measures nothing: its logins need not wait
        workers=args.workers,
        redis=args.redis,
        redis_url=args.redis_url,
        scaling=args.scaling if args.scaling is not None else backend == "pg",
        out=args.out,
        chart=args.out.with_name(f"results-{backend}.png"),
        workdir=args.workdir / f"{backend}-{os.getpid()}",
        pg_admin_url=args.pg_admin_url,
        keep=args.keep,
        smoke=args.smoke,
    )


def redis_problem(url: str) -> str | None:
    """None when Redis answers at `url` (its database then flushed), else why not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except redis.RedisError as error:
        return f"Redis at {url} is unreachable: {error}"
    return None


def tree_description() -> str:
    """The commit the service ran from, and whether the tree had changes beside it."""
    if GIT is None:
        return ""
    try:
        commit = subprocess.run(  # noqa: S603
            [GIT, "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603
            [GIT, "status", "--porcelain", "--untracked-files=no", "--", "referral"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"{commit} (with uncommitted changes in referral/)" if dirty else commit


class Bench:
    def __init__(self, options: Options, wrk: Wrk) -> None:
        self.o = options
        self.wrk = wrk
        self.secret = secrets.token_urlsafe(48)
        self.results = Results(options, datetime.now(UTC), tree=tree_description())
        self.pg_databases: list[ThrowawayPostgres] = []
        self.password_hash = ""
        self._prefixes = 0

    # -- databases -------------------------------------------------------------------------------

    def database(self, name: str, plan: SeedPlan) -> str:
        print(f"database {name}: {plan.users:,} users, {sum(plan.referrals.values()):,} referrals", flush=True)
        if self.o.backend == "sqlite":
            path = self.o.workdir / f"{name}.db"
            url = f"sqlite+aiosqlite:///{path}"
            migrate(url)
            seed_sqlite(path, plan, self.password_hash, label=name)
        else:
            database = ThrowawayPostgres(server_url=self.o.pg_admin_url, name=f"referral_bench_{os.getpid()}_{name}")
            self.pg_databases.append(database)
            url = database.url
            migrate(url)
            seed_pg(url, plan, self.password_hash, label=name)
        return url

    def cleanup(self) -> None:
        if self.o.keep:
            return
        for database in self.pg_databases:
            database.drop()
        shutil.rmtree(self.o.workdir, ignore_errors=True)

    # -- servers ---------------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """The bench's environment less every setting of the service and of Sanic."""
        settings = {variable_name(name) for name in Settings.model_fields}
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in settings and not k.startswith(("SANIC_", "DB_", "PROMETHEUS_", "BENCH_"))
        }
        return {**env, "SANIC_NO_MOTD": "true", "PYTHONUNBUFFERED": "1"}

    def service(
        self,
        name: str,
        url: str,
        *,
        cache: bool = True,
        workers: int | None = None,
        redis: bool | None = None,
        **settings: str,
    ) -> Server:
        """`python -m referral` with the production settings (PRODUCTION), then `settings` on top."""
        redis = self.o.redis if redis is None else redis
        env = {
            **self.base_env(),
            "SANIC_ACCESS_LOG": "false",  # Sanic's own; the service's is ACCESS_LOG
            "DATABASE_URL": url,
            "SERVICE_NAME": "referral",
            "SECRET_KEY": self.secret,
            "BCRYPT_ROUNDS": str(self.o.bcrypt_rounds),
            "CODE_CACHE_TTL": "60" if cache else "0",
            "WORKERS": str(workers or self.o.workers),
            **PRODUCTION,
            **({"REDIS_URL": self.o.redis_url} if redis else {}),
            **settings,
        }
        return Server(name, "referral", env, self.o.workdir)

    def ceiling(self, name: str, **env: str) -> Server:
        return Server(name, "bench.ceiling", {**self.base_env(), **env}, self.o.workdir)

    def db_ceiling(self, name: str, url: str) -> Server:
        env = {
            **self.base_env(),
            "BENCH_DB_URL": url,
            "BENCH_DB_POOL": str(Settings.model_fields["db_pool_size"].default),
        }
        return Server(name, "bench.dbceiling", env, self.o.workdir)

    @contextlib.contextmanager
    def serving(self, servers: dict[str, Server], labels: dict[str, str] | None = None) -> Iterator[dict[str, Server]]:
        """Start `servers` side by side; on leaving, stop them and keep each one's peak RSS (by label)."""
        start_all(list(servers.values()))
        try:
            yield servers
        finally:
            peaks = self.results.peak_rss_mib
            for name, server in servers.items():
                server.stop()
                label = (labels or {}).get(name, name)
                peaks[label] = max(peaks.get(label, 0.0), server.peak_rss_mib)

    def token(self, user_id: int) -> str:
        return issue_token(TokenSubject(user_id, 0), load_settings(env={}, secret_key=self.secret))

    def prefix(self) -> str:
        """A new prefix for registered emails: every registration row registers new addresses."""
        self._prefixes += 1
        return f"r{self._prefixes}"

    # -- measurements ----------------------------------------------------------------------------

    def load(self, server: Server, script: str, *, connections: int | None = None, **env: str | int) -> LoadResult:
        """`script` against `server` for `seconds`, with the CPU time the server spent per answered request."""
        connections = connections or self.o.connections
        cpu = server.cpu_seconds()
        result = self.wrk.run(server.url, script, connections=connections, seconds=self.o.seconds, env=_bench_env(env))
        cpu = server.cpu_seconds() - cpu
        return replace(result, cpu_us=cpu * 1e6 / result.requests if result.requests else None)

    def warm(self, server: Server, script: str, **env: str | int) -> None:
        """The same load, unmeasured, for a second and until it went through its `count` emails twice (in
        turn, not at random): fills the code cache (a slow server would still be filling it in the measured row) and the
        database's pages."""
        if self.o.smoke:
            return
        cycle = 0 if env.get("random") else int(env.get("count", 0))  # random emails: no set to go through
        requests, started = 0, time.monotonic()
        while requests < 2 * cycle or not requests:
            done = self.wrk.run(server.url, script, connections=self.o.connections, seconds=1, env=_bench_env(env))
            requests += done.requests
            if time.monotonic() - started > 30:
                break

    def show(self, name: str, result: LoadResult) -> LoadResult:
        print(
            f"  {name:<44} {result.rps:>9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
            f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}  CPU {result.cpu_us or 0:7.1f} us/req",
            flush=True,
        )
        return result

    def record(self, name: str, result: LoadResult) -> LoadResult:
        """A row of the endpoint table."""
        self.results.rows[name] = result
        return self.show(name, result)

    def compare(self, plan: list[tuple[str, Server, str, dict[str, str | int]]]) -> dict[str, LoadResult]:
        """Each (row, server, script, env) in turn, `rounds` times; each row's median round (by req/s)."""
        measured: dict[str, list[LoadResult]] = {name: [] for name, *_ in plan}
        for round_number in range(1, self.o.rounds + 1):
            if self.o.rounds > 1:
                print(f" round {round_number} of {self.o.rounds}", flush=True)
            for name, server, script, env in plan:
                values = {k: (v() if callable(v) else v) for k, v in env.items()}
                measured[name].append(self.show(name, self.load(server, script, **values)))
        self.results.rounds.update(measured)
        return {name: _median(results) for name, results in measured.items()}

    def time_one_hash(self, *, niceness: int = 0) -> float:
        """The time of one bcrypt hash at the service's cost in this process (the median of HASH_SAMPLES),
        in a thread at `niceness` (the service hashes at HASHING_NICENESS)."""

        def timed() -> float:
            if niceness:
                with contextlib.suppress(OSError, AttributeError):
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
            samples = []
            for _ in range(HASH_SAMPLES):
                started = time.perf_counter()
                _hash_sync(BENCH_PASSWORD, self.o.bcrypt_rounds)
                samples.append(time.perf_counter() - started)
            return statistics.median(samples)

        with ThreadPoolExecutor(max_workers=1) as thread:
            return thread.submit(timed).result()

    def run(self) -> Results:
        o = self.o
        r = self.results
        o.workdir.mkdir(parents=True, exist_ok=True)
        if o.redis and (problem := redis_problem(o.redis_url)):
            raise SystemExit(f"--redis: {problem}")
        self.password_hash = shared_password_hash(o.bcrypt_rounds)
        started = time.monotonic()
        referrals = {SMALL_REFERRER: o.small_referrals, BIG_REFERRER: o.referrals}
        main_url = self.database("main", SeedPlan(o.users, referrals, {LIMITED_CODE_OWNER: LIMITED_CODE_MAX_USES}))
        small_url = self.database("small", SeedPlan(o.small_users))
        r.seed_seconds = time.monotonic() - started

        hot = {"first": min(100, o.users // 2), "count": min(1_000, o.users // 2)}
        everyone = {"first": 1, "count": o.users, "random": 1}
        writers = range(10, 10 + min(50, o.users - 10))
        tokens = o.workdir / "update-tokens.txt"
        tokens.write_text("".join(f"{self.token(n)}\n" for n in writers))
        user_ids = o.workdir / "update-user-ids.txt"  # the DB ceiling's "token": the user id itself
        user_ids.write_text("".join(f"{n}\n" for n in writers))
        small_list = {"user": SMALL_REFERRER, "token": self.token(SMALL_REFERRER), "limit": 100}
        big_list = {"user": BIG_REFERRER, "token": self.token(BIG_REFERRER), "limit": 100}
        logins = {"first": hot["first"], "count": hot["count"], "password": BENCH_PASSWORD}
        register_code = code_of(REGISTER_CODE_OWNER)
        registering = {"code": register_code, "prefix": self.prefix}
        registering_limited = {"code": code_of(LIMITED_CODE_OWNER), "prefix": self.prefix}

        # 1. Cached getcode: the ceilings and the service with each feature switched, side by side.
        servers = {CEILING: self.ceiling("ceiling")}
        if not o.smoke:  # the smoke run keeps one server of each kind: it checks the rows, not the costs
            servers[CEILING_WITH_EXT] = self.ceiling("ceiling-ext", BENCH_CEILING_EXT="1")
        all_off = {"RATE_LIMIT": "off", "METRICS": "off", "ACCESS_LOG": "off"}
        features: dict[str, dict[str, str]] = {HOT: {}}
        logged = available("ACCESS_LOG") and service_access_log() is not None
        if logged:
            servers[LOG_CEILING] = self.ceiling("ceiling-log", BENCH_CEILING_LOG="1", LOG_FORMAT="text")
            features[HOT_LOGGED] = {"ACCESS_LOG": "on"}
        else:
            r.todo[HOT_LOGGED] = r.todo[LOG_CEILING] = r.todo[ONLY_ACCESS_LOG] = (
                "TODO: this tree has no ACCESS_LOG setting or no referral.logs access line yet"
            )
        features[ALL_OFF] = all_off
        if not o.smoke:
            features[ONLY_RATE_LIMIT] = {**all_off, "RATE_LIMIT": "on"}
            if available("METRICS"):
                features[ONLY_METRICS] = {**all_off, "METRICS": "on"}
            else:
                r.todo[ONLY_METRICS] = "TODO: this tree has no METRICS setting"
            if logged:
                features[ONLY_ACCESS_LOG] = {**all_off, "ACCESS_LOG": "on"}
        labels = {row: "service" if row == HOT else f"service, {row}" for row in features}
        labels[HOT_LOGGED] = "service, access log on"
        for number, (row, settings) in enumerate(features.items()):
            servers[row] = self.service("service" if row == HOT else f"service-{number}", main_url, **settings)
        print(f"cached getcode: {', '.join(servers)}", flush=True)
        with self.serving(servers, labels):
            for server in servers.values():
                self.warm(server, "getcode", **hot)
            medians = self.compare([(row, server, "getcode", hot) for row, server in servers.items()])
        for row in (CEILING, CEILING_WITH_EXT, LOG_CEILING, HOT, HOT_LOGGED):
            if row in medians:
                r.rows[row] = medians[row]
        r.features = {row: medians[row] for row in features}

        # 2. The headline service: logins, alone and in a storm; the database rows against the driver.
        print("service (production settings), its DB ceiling, and the service with the code cache off", flush=True)
        servers = {
            "service": self.service("service", main_url),
            "DB ceiling": self.db_ceiling("db-ceiling", main_url),
            "service, cache off": self.service("service-nocache", main_url, cache=False),
        }
        with self.serving(servers):
            service, ceiling, nocache = servers.values()
            self.isolation(service, hot, logins)
            r.forgot_ms = self.forgot_timing(service)
            self.record(AUTH, self.load(service, "auth", connections=o.storm_connections, **logins))
            for server in (ceiling, nocache):
                self.warm(server, "getcode", **everyone)
            plan: list[tuple[str, Server, str, dict[str, str | int]]] = [
                (DB_GETCODE, ceiling, "getcode", everyone),
                (NOCACHE, nocache, "getcode", everyone),
                (DB_LIST, ceiling, "list", small_list),
                (LIST, nocache, "list", small_list),
            ]
            if o.backend == "pg":
                plan.append((DB_REGISTER, ceiling, "register", registering))
            plan += [
                (REGISTER, service, "register", registering),
                (REGISTER_LIMITED, service, "register", registering_limited),
            ]
            if o.backend == "pg":
                plan += [
                    (DB_UPDATE, ceiling, "update_code", {"tokens": str(user_ids)}),
                    (UPDATE, service, "update_code", {"tokens": str(tokens)}),
                ]
            medians = self.compare(plan)
            for row, *_ in plan:
                r.rows[row] = medians[row]
            if o.backend != "pg":  # no DB ceiling for update_code on SQLite: measured once
                self.record(UPDATE, self.load(service, "update_code", tokens=str(tokens)))
            r.scale_getcode[o.users] = r.rows[NOCACHE]
            r.scale_list[o.small_referrals] = r.rows[LIST]
            r.scale_list[o.referrals] = self.show(
                f"list page, {o.referrals:,} referrals", self.load(nocache, "list", **big_list)
            )
            for referrer, count in ((SMALL_REFERRER, o.small_referrals), (BIG_REFERRER, o.referrals)):
                r.scale_stats[count] = self.show(
                    f"/refer/stats, {count:,} referrals", self.load(nocache, "stats", token=self.token(referrer))
                )

        # 3. Scale and connection handling.
        print(f"service, code cache off, {o.small_users:,} users", flush=True)
        small_everyone = {**everyone, "count": o.small_users}
        with self.serving({"service, small database": self.service("service-small", small_url, cache=False)}) as s:
            (server,) = s.values()
            self.warm(server, "getcode", **small_everyone)
            r.scale_getcode[o.small_users] = self.show(
                f"getcode, {o.small_users:,} users", self.load(server, "getcode", **small_everyone)
            )

        # 4. Workers and the Redis code cache.
        if o.scaling:
            self.scaling(main_url, hot, register_code)

        # 5. Webhooks: their cost on the API, a hanging receiver, and a backlog's drain.
        if available("WEBHOOK_URLS"):
            r.webhooks = webhooks.measure(
                self, main_url, small_url, hot, register_code, drain_events=300 if o.smoke else webhooks.DRAIN_EVENTS
            )
        else:
            r.todo["webhooks"] = "TODO: this tree has no WEBHOOK_URLS setting"

        # 6. The per-IP limit's counter with many clients, in process.
        print("rate-limit counters by clients in the window", flush=True)
        r.limiter_us = limiter.measure(smoke=o.smoke)
        return r

    def isolation(self, server: Server, hot: dict[str, int], logins: dict[str, str | int]) -> None:
        o, r = self.o, self.results
        r.hash_seconds = self.time_one_hash()
        r.hash_seconds_niced = self.time_one_hash(niceness=HASHING_NICENESS)
        print(
            f"isolation: one cost-{o.bcrypt_rounds} hash takes {r.hash_seconds * 1000:.0f} ms here: bcrypt's limit is "
            f"{os.cpu_count()} cores / that = {r.bcrypt_limit:.2f} logins/s (at nice {HASHING_NICENESS}: "
            f"{r.hash_seconds_niced * 1000:.0f} ms); paced getcode p99, alone and in a "
            f"login storm of {o.storm_connections} connections",
            flush=True,
        )
        self.warm(server, "getcode", **hot)
        paced = {**hot, "delay_ms": ISOLATION_DELAY_MS}
        # Twice as long as the other rows: a p99 of a fraction of a millisecond needs the samples.
        isolation = {"connections": o.isolation_connections, "seconds": 2 * o.seconds, "env": _bench_env(paced)}
        r.quiet = self.wrk.run(server.url, "getcode", **isolation)
        storm = self.wrk.start(
            server.url, "auth", connections=o.storm_connections, seconds=2 * o.seconds + 2, env=_bench_env(logins)
        )
        time.sleep(1)  # the storm is on
        r.storm = self.wrk.run(server.url, "getcode", **isolation)
        r.storm_auth = self.wrk.finish(storm)
        print(
            f"  quiet p99 {r.quiet.p99_ms:.2f} ms, storm p99 {r.storm.p99_ms:.2f} ms "
            f"(auth {r.storm_auth.rps:.2f} req/s meanwhile, {r.storm_auth.errors} errors)",
            flush=True,
        )
        time.sleep(3)  # let the storm's last logins finish

    def forgot_timing(self, server: Server) -> tuple[float, float]:
        """Medians of FORGOT_SAMPLES `/user/password/forgot` requests for emails with an account and as many
        without, alternated, one at a time: the answer must not tell them apart by its time either."""
        known: list[float] = []
        unknown: list[float] = []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for n in range(FORGOT_SAMPLES):
                for email, samples in ((email_of(1 + n % self.o.users), known), (f"nobody{n}@example.com", unknown)):
                    started = time.perf_counter()
                    answer = client.post("/user/password/forgot", json={"email": email})
                    samples.append((time.perf_counter() - started) * 1000)
                    if answer.status_code != 202:
                        raise RuntimeError(f"/user/password/forgot answered {answer.status_code}: {answer.text}")
        result = statistics.median(known), statistics.median(unknown)
        print(
            f"  /user/password/forgot p50: {result[0]:.2f} ms with an account, {result[1]:.2f} ms without", flush=True
        )
        return result

    def scaling(self, url: str, hot: dict[str, int], register_code: str) -> None:
        o, r = self.o, self.results
        configurations: dict[str, dict[str, object]] = {}
        for workers in sorted({1, max(2, o.workers)}):
            configurations[f"{workers} worker{'s' if workers > 1 else ''}, in-process cache"] = {
                "workers": workers,
                "redis": False,
            }
        problem = redis_problem(o.redis_url)
        if problem is None:
            for workers in sorted({1, max(2, o.workers)}):
                configurations[f"{workers} worker{'s' if workers > 1 else ''}, Redis (REDIS_URL)"] = {
                    "workers": workers,
                    "redis": True,
                }
        else:
            r.scaling_note = f"no Redis rows: {problem}"
        if o.smoke:  # one of each kind is enough to know the rows still work
            configurations = dict(list(configurations.items())[-1:])
        print(f"scaling: {', '.join(configurations)}", flush=True)
        servers = {
            f"scaling: {name}": self.service(f"scaling-{i}", url, **config)  # type: ignore[arg-type]
            for i, (name, config) in enumerate(configurations.items())
        }
        with self.serving(servers):
            plan: list[tuple[str, Server, str, dict[str, str | int]]] = []
            for name, server in servers.items():
                self.warm(server, "getcode", **hot)
                plan.append((f"{name}|{HOT}", server, "getcode", hot))
                plan.append((f"{name}|{REGISTER}", server, "register", {"code": register_code, "prefix": self.prefix}))
            medians = self.compare(plan)
        for key, result in medians.items():
            name, row = key.split("|")
            r.scaling.setdefault(name.removeprefix("scaling: "), {})[row] = result


def _median(results: list[LoadResult]) -> LoadResult:
    """The median round by req/s, with the median of the rounds' CPU per request."""
    middle = sorted(results, key=lambda result: result.rps)[(len(results) - 1) // 2]
    cpu = [result.cpu_us for result in results if result.cpu_us is not None]
    return replace(middle, cpu_us=statistics.median(cpu) if cpu else None)


def _bench_env(values: dict[str, str | int]) -> dict[str, str]:
    return {f"BENCH_{k.upper()}": str(v) for k, v in values.items()}


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    wrk = Wrk(ensure_wrk())
    print(
        f"bench on {options.backend}: {options.users:,} users, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {options.seconds:g} s per measurement, {options.rounds} rounds",
        flush=True,
    )
    started = time.monotonic()
    bench = Bench(options, wrk)
    try:
        results = bench.run()
    finally:
        bench.cleanup()
    results.run_seconds = time.monotonic() - started
    section = report.markdown(results)
    print()
    print(section)
    report.update_results_file(options.out, options.backend, section)
    report.chart(results, options.chart)
    print(f"written: {options.out} and {options.chart} ({results.run_seconds:.0f} s)")
    if not report.all_met(results):
        print("some targets are missed: see the Targets table", file=sys.stderr)


if __name__ == "__main__":
    main()
