"""`make bench [ARGS="--pg --users N ..."]`: seed, serve, load with wrk, report against a bare-Sanic ceiling.

One run measures, with the service's production settings (one worker, access log off, bcrypt cost 12,
rate limits off): the ceiling, each endpoint flat out, getcode's p99 alone and during a login storm,
getcode at a small and the full user count, a list page at 1,000 and 100,000 referrals, peak RSS,
and on SQLite the stock `databases` backend next to the pooled one. Results go to bench/RESULTS.md
(the section of this backend) and a PNG chart beside it.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.load import LoadResult, Wrk, ensure_wrk
from bench.seed import (
    BENCH_PASSWORD,
    SeedPlan,
    code_of,
    migrate,
    seed_pg,
    seed_sqlite,
    shared_password_hash,
)
from bench.servers import Server
from referral.config import load_settings
from referral.security import TokenSubject, issue_token
from tests.support import ThrowawayPostgres

BENCH_DIR = Path(__file__).resolve().parent
MAX_USERS = 1_000_000
SMALL_REFERRER, BIG_REFERRER, REGISTER_CODE_OWNER = 1, 2, 3
CEILING_WITH_EXT = "bare Sanic + sanic-ext (reference)"
ISOLATION_DELAY_MS = 2  # each isolation connection waits 2 ms between requests: a steady load, not flat out
SERVICE_KEYS = ("DATABASE_URL", "DB_", "REDIS_URL", "SQLITE_POOL", "CODE_CACHE", "RATE_LIMIT", "BCRYPT", "SANIC_")


@dataclass
class Options:
    backend: str
    users: int
    small_users: int
    referrals: int
    small_referrals: int
    seconds: float
    connections: int
    storm_connections: int
    isolation_connections: int
    stock: bool
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
    endpoints: dict[str, LoadResult] = field(default_factory=dict)
    quiet: LoadResult | None = None
    storm: LoadResult | None = None
    storm_auth: LoadResult | None = None
    scale_getcode: dict[int, LoadResult] = field(default_factory=dict)
    scale_list: dict[int, LoadResult] = field(default_factory=dict)
    stock: dict[str, tuple[LoadResult, LoadResult]] = field(default_factory=dict)  # name -> (stock, pooled)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    seed_seconds: float = 0.0


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="make bench ARGS=...", description=__doc__.split("\n")[0])
    parser.add_argument("--pg", action="store_true", help="PostgreSQL (a throwaway database) instead of SQLite")
    parser.add_argument("--users", type=int, default=10_000, help=f"seeded users, up to {MAX_USERS:,}")
    parser.add_argument("--small-users", type=int, default=1_000, help="users of the small database (scale)")
    parser.add_argument("--referrals", type=int, default=100_000, help="referrals of the big referrer")
    parser.add_argument("--small-referrals", type=int, default=1_000, help="referrals of the small referrer")
    parser.add_argument("--seconds", type=float, default=5, help="load per measurement")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections per endpoint")
    parser.add_argument("--no-stock", action="store_true", help="skip the stock SQLite backend comparison")
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
        args.seconds, args.connections = 1, 4
    if not 10 <= args.users <= MAX_USERS:
        parser.error(f"--users must be between 10 and {MAX_USERS:,}")
    backend = "pg" if args.pg else "sqlite"
    return Options(
        backend=backend,
        users=args.users,
        small_users=min(args.small_users, args.users),
        referrals=args.referrals,
        small_referrals=args.small_referrals,
        seconds=args.seconds,
        connections=args.connections,
        storm_connections=8,
        isolation_connections=min(args.connections, 4),
        stock=backend == "sqlite" and not args.no_stock,
        out=args.out,
        chart=args.out.with_name(f"results-{backend}.png"),
        workdir=args.workdir / f"{backend}-{os.getpid()}",
        pg_admin_url=args.pg_admin_url,
        keep=args.keep,
        smoke=args.smoke,
    )


class Bench:
    def __init__(self, options: Options, wrk: Wrk) -> None:
        self.o = options
        self.wrk = wrk
        self.secret = secrets.token_urlsafe(48)
        self.results = Results(options, datetime.now(UTC))
        self.pg_databases: list[ThrowawayPostgres] = []
        self.password_hash = ""

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
        env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_KEYS)}
        return {**env, "SANIC_ACCESS_LOG": "false", "SANIC_NO_MOTD": "true", "PYTHONUNBUFFERED": "1"}

    def service(self, name: str, url: str, *, cache: bool, pool: bool = True) -> Server:
        env = {
            **self.base_env(),
            "DATABASE_URL": url,
            "DB_SCHEMA": "",
            "REDIS_URL": "",
            "SERVICE_NAME": "referral",
            "SECRET_KEY": self.secret,
            "BCRYPT_ROUNDS": "12",
            "CODE_CACHE_TTL": "60" if cache else "0",
            "RATE_LIMIT": "off",
            "WORKERS": "1",
            "SQLITE_POOL": "on" if pool else "off",
        }
        return Server(name, "referral", env, self.o.workdir)

    def token(self, user_id: int) -> str:
        return issue_token(TokenSubject(user_id, 0), load_settings(env={}, secret_key=self.secret))

    # -- measurements ----------------------------------------------------------------------------

    def load(self, server: Server, script: str, *, connections: int | None = None, **env: str | int) -> LoadResult:
        connections = connections or self.o.connections
        return self.wrk.run(server.url, script, connections=connections, seconds=self.o.seconds, env=_bench_env(env))

    def warm(self, server: Server, script: str, **env: str | int) -> None:
        """One second of the same load, unmeasured: fills the code cache and the database's pages."""
        if not self.o.smoke:
            self.wrk.run(server.url, script, connections=self.o.connections, seconds=1, env=_bench_env(env))

    def record(self, name: str, result: LoadResult, *, endpoint: bool = True) -> LoadResult:
        """Print `result`; with `endpoint`, it is also a row of the endpoint table."""
        if endpoint:
            self.results.endpoints[name] = result
        print(
            f"  {name:<34} {result.rps:>9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
            f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
            flush=True,
        )
        return result

    def run(self) -> Results:
        o = self.o
        o.workdir.mkdir(parents=True, exist_ok=True)
        self.password_hash = shared_password_hash()
        started = time.monotonic()
        main_url = self.database(
            "main", SeedPlan(o.users, {SMALL_REFERRER: o.small_referrals, BIG_REFERRER: o.referrals})
        )
        small_url = self.database("small", SeedPlan(o.small_users))
        self.results.seed_seconds = time.monotonic() - started

        hot = {"first": min(100, o.users // 2), "count": min(1_000, o.users // 2)}
        everyone = {"first": 1, "count": o.users, "random": 1}
        writers = range(10, 10 + min(50, o.users - 10))
        tokens = o.workdir / "update-tokens.txt"
        tokens.write_text("".join(f"{self.token(n)}\n" for n in writers))
        small_list = {"user": SMALL_REFERRER, "token": self.token(SMALL_REFERRER), "limit": 100}
        big_list = {"user": BIG_REFERRER, "token": self.token(BIG_REFERRER), "limit": 100}
        logins = {"first": hot["first"], "count": hot["count"], "password": BENCH_PASSWORD}

        print("ceiling: bare Sanic answering getcode's JSON, then the same with sanic-ext", flush=True)
        for name, ext in (("ceiling", "0"), (CEILING_WITH_EXT, "1")):
            with Server(name, "bench.ceiling", {**self.base_env(), "BENCH_CEILING_EXT": ext}, o.workdir) as ceiling:
                self.warm(ceiling, "getcode", **hot)
                self.record(name, self.load(ceiling, "getcode", **hot))
            self.results.peak_rss_mib[name] = ceiling.peak_rss_mib

        print("service, code cache on", flush=True)
        with self.service("service", main_url, cache=True) as server:
            # Warm the code cache, then measure it hot: these three rows take well under CODE_CACHE_TTL.
            self.warm(server, "getcode", **hot)
            self.record("getcode (cache hot)", self.load(server, "getcode", **hot))
            print(f"isolation: paced getcode p99, alone and in a login storm of {o.storm_connections} connections")
            paced = {**hot, "delay_ms": ISOLATION_DELAY_MS}
            # Twice as long as the other rows: a p99 of a fraction of a millisecond needs the samples.
            isolation = {"connections": o.isolation_connections, "seconds": 2 * o.seconds, "env": _bench_env(paced)}
            self.results.quiet = self.wrk.run(server.url, "getcode", **isolation)
            storm = self.wrk.start(
                server.url, "auth", connections=o.storm_connections, seconds=2 * o.seconds + 2, env=_bench_env(logins)
            )
            time.sleep(1)  # the storm is on
            self.results.storm = self.wrk.run(server.url, "getcode", **isolation)
            self.results.storm_auth = self.wrk.finish(storm)
            print(
                f"  quiet p99 {self.results.quiet.p99_ms:.2f} ms, storm p99 {self.results.storm.p99_ms:.2f} ms "
                f"(auth {self.results.storm_auth.rps:.1f} req/s meanwhile)",
                flush=True,
            )
            time.sleep(3)  # let the storm's last logins finish
            self.record(
                "/referals/register", self.load(server, "register", code=code_of(REGISTER_CODE_OWNER), prefix="a")
            )
            self.results.scale_list[o.small_referrals] = self.record(
                "/referals/list (100-row page)", self.load(server, "list", **small_list)
            )
            self.results.scale_list[o.referrals] = self.record(
                f"list page, {o.referrals:,} referrals", self.load(server, "list", **big_list), endpoint=False
            )
            self.record("/refer/update_code", self.load(server, "update_code", tokens=str(tokens)))
            self.record("/user/auth", self.load(server, "auth", connections=o.storm_connections, **logins))
        self.results.peak_rss_mib["service"] = server.peak_rss_mib

        print("service, code cache off", flush=True)
        with self.service("service-nocache", main_url, cache=False) as server:
            self.warm(server, "getcode", **everyone)
            result = self.record("getcode (cache disabled)", self.load(server, "getcode", **everyone))
            self.results.scale_getcode[o.users] = result
        self.results.peak_rss_mib["service, cache off"] = server.peak_rss_mib

        print(f"service, code cache off, {o.small_users:,} users", flush=True)
        small_everyone = {**everyone, "count": o.small_users}
        with self.service("service-small", small_url, cache=False) as server:
            self.warm(server, "getcode", **small_everyone)
            self.results.scale_getcode[o.small_users] = self.record(
                f"getcode, {o.small_users:,} users", self.load(server, "getcode", **small_everyone), endpoint=False
            )
        self.results.peak_rss_mib["service, small database"] = server.peak_rss_mib

        if o.stock:
            print("stock `databases` SQLite backend (SQLITE_POOL=off), code cache off", flush=True)
            with self.service("service-stock", main_url, cache=False, pool=False) as server:
                self.warm(server, "getcode", **everyone)
                stock_getcode = self.load(server, "getcode", **everyone)
                stock_list = self.load(server, "list", **small_list)
            self.results.stock["getcode (cache disabled)"] = (stock_getcode, self.results.scale_getcode[o.users])
            self.results.stock["/referals/list (100-row page)"] = (
                stock_list,
                self.results.scale_list[o.small_referrals],
            )
            for name, (stock, pooled) in self.results.stock.items():
                print(f"  {name:<34} stock {stock.rps:8.1f} req/s, pooled {pooled.rps:8.1f} req/s", flush=True)
        return self.results


def _bench_env(values: dict[str, str | int]) -> dict[str, str]:
    return {f"BENCH_{k.upper()}": str(v) for k, v in values.items()}


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    wrk = Wrk(ensure_wrk())
    print(
        f"bench on {options.backend}: {options.users:,} users, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {options.seconds:g} s per measurement",
        flush=True,
    )
    bench = Bench(options, wrk)
    try:
        results = bench.run()
    finally:
        bench.cleanup()
    section = report.markdown(results)
    print()
    print(section)
    report.update_results_file(options.out, options.backend, section)
    report.chart(results, options.chart)
    print(f"written: {options.out} and {options.chart}")
    if not report.all_met(results):
        print("some targets are missed: see the Targets table", file=sys.stderr)


if __name__ == "__main__":
    main()
