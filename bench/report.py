"""The bench's output: a markdown section (printed and kept in RESULTS.md) and a PNG bar chart."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import rows as names
from referral.security import HASHING_NICENESS

if TYPE_CHECKING:
    from bench.load import LoadResult
    from bench.run import Results
    from bench.webhooks import WebhookResults

BACKEND_TITLES = {"sqlite": "SQLite", "pg": "PostgreSQL"}
HEADER = """# Benchmark results

Produced by `make bench` (SQLite) and `make bench ARGS=--pg` (PostgreSQL); each run rewrites its own
section below and leaves the rest of this file alone. How to read them and what was fixed: see the
notes at the end.
"""
ROW_ORDER = (
    names.CEILING,
    names.CEILING_WITH_EXT,
    names.LOG_CEILING,
    names.HOT,
    names.HOT_LOGGED,
    names.DB_GETCODE,
    names.NOCACHE,
    names.DB_LIST,
    names.LIST,
    names.DB_REGISTER,
    names.REGISTER,
    names.REGISTER_LIMITED,
    names.DB_UPDATE,
    names.UPDATE,
    names.AUTH,
)
ROW_LABELS = {names.CEILING: "ceiling: bare Sanic, getcode's JSON"}
FEATURE_LABELS = {
    names.HOT: "production settings, access log off (the headline row)",
    names.HOT_LOGGED: "production settings, access log on",
}
MIB_TARGET = 120


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    limit: str
    met: bool | None  # None: reported, no target (or not measurable in this tree)

    @property
    def verdict(self) -> str:
        if self.met is None:
            return "report" if self.limit == "no target" else "pending"
        return "yes" if self.met else "**no**"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


def _cost_us(on: LoadResult, off: LoadResult) -> float:
    """What a feature adds to each request, from the two saturated rates: 1/on - 1/off, in us."""
    return (1e6 / on.rps if on.rps else 0.0) - (1e6 / off.rps if off.rps else 0.0)


def _cpu_ratio(res: LoadResult, ceiling: LoadResult) -> float | None:
    """The ceiling's CPU per request over this row's: what the req/s ratio would be on a core of its own."""
    if res.cpu_us and ceiling.cpu_us:
        return ceiling.cpu_us / res.cpu_us
    return None


def _both(res: LoadResult, ceiling: LoadResult | None) -> str:
    if ceiling is None:
        return "-"
    cpu = _cpu_ratio(res, ceiling)
    return f"{_ratio(res.rps, ceiling.rps):.2f}x" + (f" · {cpu:.2f}x" if cpu is not None else "")


def _cpu(res: LoadResult) -> str:
    return f"{res.cpu_us:,.0f}" if res.cpu_us is not None else "-"


def _scale_target(name: str, by_size: dict[int, LoadResult], limit: str, at_most: float = 1.5) -> Target:
    """p50 at the larger size over p50 at the smaller one, at most `at_most`."""
    small, big = sorted(by_size)
    x = _ratio(by_size[big].p50_ms, by_size[small].p50_ms)
    measured = f"{by_size[big].p50_ms:.2f} / {by_size[small].p50_ms:.2f} ms = {x:.2f}x"
    return Target(name.format(big=big, small=small), measured, limit, x <= at_most)


def _vs(name: str, row: str, ceiling: str, r: Results, at_least: float | None) -> Target | None:
    a, b = r.rows.get(row), r.rows.get(ceiling)
    if a is None or b is None:
        if row in r.todo or ceiling in r.todo:
            return Target(name, r.todo.get(row) or r.todo[ceiling], f">= {at_least}x", None)
        return None
    x = _ratio(a.rps, b.rps)
    measured = f"{a.rps:,.0f} / {b.rps:,.0f} req/s = {x:.2f}x"
    if (cpu := _cpu_ratio(a, b)) is not None:
        measured += f" (CPU per request: {b.cpu_us:,.0f} / {a.cpu_us:,.0f} us = {cpu:.2f}x)"
    if at_least is None:
        return Target(name, measured, "no target", None)
    return Target(name, measured, f">= {at_least}x", x >= at_least)


def worker_rss(r: Results) -> float:
    """The largest peak RSS of a service process (any configuration)."""
    return max((v for k, v in r.peak_rss_mib.items() if k.startswith(("service", "scaling"))), default=0.0)


def targets(r: Results) -> list[Target]:
    o = r.options
    found = [
        _vs("getcode, cache off, vs DB ceiling", names.NOCACHE, names.DB_GETCODE, r, 0.6),
        _vs("100-row list page vs DB ceiling", names.LIST, names.DB_LIST, r, 0.5),
        _vs("cached getcode, production settings, access log off, vs bare Sanic", names.HOT, names.CEILING, r, 0.6),
        _vs("cached getcode, access log on, vs the logging ceiling", names.HOT_LOGGED, names.LOG_CEILING, r, 0.8),
    ]
    if r.storm_auth and r.hash_seconds:
        x = _ratio(r.storm_auth.rps, r.bcrypt_limit)
        found.append(
            Target(
                "logins during a storm vs bcrypt's limit",
                f"{r.storm_auth.rps:.2f} / ({os.cpu_count()} cores / {r.hash_seconds * 1000:.0f} ms = "
                f"{r.bcrypt_limit:.2f}) = {x:.2f}x",
                ">= 0.85x",
                x >= 0.85,
            )
        )
    if r.quiet and r.storm:
        x = _ratio(r.storm.p99_ms, r.quiet.p99_ms)
        found.append(
            Target(
                "getcode p99 during the storm vs quiet",
                f"{r.storm.p99_ms:.2f} / {r.quiet.p99_ms:.2f} ms = {x:.2f}x",
                "<= 3x",
                x <= 3,
            )
        )
    found += [
        _vs("referral registration vs DB ceiling (same statements)", names.REGISTER, names.DB_REGISTER, r, None),
        _vs("update_code vs DB ceiling (same statements)", names.UPDATE, names.DB_UPDATE, r, None),
    ]
    rss = worker_rss(r)
    found.append(Target("peak RSS of a service worker", f"{rss:.1f} MiB", f"< {MIB_TARGET} MiB", rss < MIB_TARGET))
    if len(r.scale_list) == 2:
        found.append(_scale_target("list page p50, {big:,} vs {small:,} referrals", r.scale_list, "<= 1.5x"))
    if len(r.scale_stats) == 2:
        found.append(_scale_target("/refer/stats p50, {big:,} vs {small:,} referrals", r.scale_stats, "<= 1.2x", 1.2))
    found.append(_vs("registration, code with max_uses vs without", names.REGISTER_LIMITED, names.REGISTER, r, 0.9))
    if len(r.scale_getcode) == 2:
        limit = "<= 1.5x" if max(r.scale_getcode) >= 1_000_000 else "<= 1.5x (the target is at 1,000,000 users)"
        found.append(_scale_target("getcode p50 (cache off), {big:,} vs {small:,} users", r.scale_getcode, limit))
    found.append(Target("seeded users", f"{o.users:,}", ">= 100,000", o.users >= 100_000))
    if r.forgot_ms is not None:
        known, unknown = r.forgot_ms
        x = max(known, unknown) / min(known, unknown)
        found.append(
            Target(
                "/user/password/forgot p50, an account vs none (50 requests each)",
                f"{known:.2f} / {unknown:.2f} ms: {x:.2f}x apart",
                "within 1.2x",
                x <= 1.2,
            )
        )
    if r.webhooks is not None:
        found += _webhook_targets(r.webhooks)
    return [t for t in found if t is not None]


def _webhook_targets(w: WebhookResults) -> list[Target]:
    found = []
    pairs = (
        ("registration with WEBHOOK_URLS vs without", names.WEBHOOKS_ON_REGISTER, names.WEBHOOKS_OFF_REGISTER, 0.85),
        (
            "cached getcode with WEBHOOK_URLS vs without (unchanged within noise)",
            names.WEBHOOKS_ON_HOT,
            names.WEBHOOKS_OFF_HOT,
            0.9,
        ),
    )
    for name, on, off, at_least in pairs:
        if on in w.rows and off in w.rows:
            a, b = w.rows[on], w.rows[off]
            x = _ratio(a.rps, b.rps)
            found.append(
                Target(name, f"{a.rps:,.0f} / {b.rps:,.0f} req/s = {x:.2f}x", f">= {at_least}x", x >= at_least)
            )
    hang, prompt = w.rows.get(names.WEBHOOKS_HANG_HOT), w.rows.get(names.WEBHOOKS_ON_HOT)
    if hang and prompt:
        x = _ratio(hang.p50_ms, prompt.p50_ms)
        measured = f"{hang.p50_ms:.2f} / {prompt.p50_ms:.2f} ms = {x:.2f}x"
        found.append(Target("cached getcode p50, receiver hangs vs answers at once", measured, "<= 1.2x", x <= 1.2))
    drained = w.drain_seconds is not None
    measured = (
        f"{w.drain_seconds:.1f} s ({w.drain_rate:,.0f} deliveries/s)" if drained else "not drained"
    ) + f"; at the end: {', '.join(f'{state} {n:,}' for state, n in sorted(w.drain_states.items()))}"
    found.append(
        Target(
            f"{w.drain_events:,} events queued while the receiver was down: drained after its return",
            measured,
            "< 60 s",
            drained and w.drain_seconds < 60 and w.drain_states.get("delivered") == w.drain_events,
        )
    )
    return found


def all_met(r: Results) -> bool:
    return all(t.met is not False for t in targets(r))


def _row(label: str, res: LoadResult, ceiling: LoadResult | None, db_ceiling: LoadResult | None) -> str:
    return (
        f"| {label} | {res.rps:,.1f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} | {res.errors} | {_cpu(res)} | "
        f"{_both(res, ceiling)} | {_both(res, db_ceiling)} |"
    )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def markdown(r: Results) -> str:
    o = r.options
    ceiling = r.rows.get(names.CEILING)
    production = ", ".join(f"{k}={v}" for k, v in names.PRODUCTION.items())
    workers = f"{o.workers} workers" if o.workers > 1 else "one worker"
    cache = f"REDIS_URL={o.redis_url}" if o.redis else "no REDIS_URL (in-process code cache and limits)"
    tree = f" from commit {r.tree}" if r.tree else ""
    lines = [
        f"## {BACKEND_TITLES[o.backend]}: {o.users:,} users",
        "",
        f"Run {r.started:%Y-%m-%d %H:%M} UTC{tree} on {os.cpu_count()} CPUs ({_cpu_model()}), "
        f"Python {platform.python_version()}, in {_duration(r.run_seconds)} (seeding {r.seed_seconds:.0f} s of it). "
        f"Service: `python -m referral`, {workers}, {cache}, BCRYPT_ROUNDS={o.bcrypt_rounds}, code cache TTL "
        "60 s (0 where it says cache disabled or cache off), and the production settings: "
        f"{production} (every limit checked on every request, none reached; request ids are always on). "
        f"Load: wrk, 1 thread, {o.connections} connections ({o.storm_connections} for /user/auth), "
        f"{o.seconds:g} s a row; rows compared with each other ran in {o.rounds} interleaved round(s), "
        "each server in turn, after a warm-up (a second, and through the hot emails twice); the table shows "
        "each row's median round (all rounds at the end). "
        f"Seeded in bulk: {o.users:,} users with one code each (all sharing one precomputed bcrypt "
        f"cost-{o.bcrypt_rounds} hash), {o.small_referrals:,} and {o.referrals:,} referrals of two referrers, plus a "
        f"{o.small_users:,}-user database for the scale row. The machine is shared (other test suites may run "
        "meanwhile) and wrk runs on the same cores: read the ratios within one run, not absolute numbers "
        "across runs.",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | errors | CPU us/req | vs ceiling | vs DB ceiling |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ROW_ORDER:
        label = ROW_LABELS.get(name, name)
        if name in r.rows:
            db_ceiling = r.rows.get(names.DB_CEILING_OF.get(name, ""))
            lines.append(_row(label, r.rows[name], ceiling, db_ceiling))
        elif name in r.todo:
            lines.append(f"| {label} | {r.todo[name]} | | | | | | |")
    lines += [
        "",
        "Ceilings: bare Sanic answering getcode's fixed JSON (`bench/ceiling.py`); the same with sanic-ext on "
        "(reference); the logging ceiling, bare Sanic writing the service's access line through the service's "
        "own logging set-up and response middleware; the DB ceilings (`bench/dbceiling.py`), bare Sanic "
        f"running the service's own compiled SQL straight on {_driver(o.backend)} (pool of the service's "
        "size), no validation, token check, cache or limits. getcode (cache hot) cycles through 1,000 emails "
        "that stay cached; getcode (cache disabled) and its DB ceiling ask for random emails among all users "
        "(CODE_CACHE_TTL=0). /referals/register registers a new email (no password) each time; /referals/list "
        f"reads the first 100-row page of a referrer with {o.small_referrals:,} referrals (the service also "
        "checks the token: a JWT decode and one `SELECT token_version`); /refer/update_code extends the codes "
        "of 50 users in turn; /user/auth logs in with the right password (one bcrypt check each).",
        "",
        "CPU us/req: the CPU time (user + system, every thread) the server's processes used during the row, "
        "divided by the requests answered. The ratio columns give two numbers, by req/s · by CPU per request "
        "(the ceiling's CPU per request over the row's). On a machine shared with other work, req/s moves with "
        "whatever else runs in those seconds; CPU per request moves far less, and is what the req/s ratio would "
        "be with a core to itself (for the database rows it leaves out the database server's own time, the same "
        "on both sides).",
    ]
    lines += _features(r)
    if r.quiet and r.storm and r.storm_auth:
        lines += [
            "",
            "### Isolation: logins during a storm, and getcode meanwhile",
            "",
            f"getcode (cache hot) at a steady pace for {2 * o.seconds:g} s: {o.isolation_connections} "
            "connections, each pausing 2 ms between requests (wrk's `delay()`), so latency is the server's, not "
            f"a queue of our own making; meanwhile {o.storm_connections} connections log in flat out. Logins run "
            f"bcrypt in a pool of one thread per core at nice {HASHING_NICENESS} (`referral/security.py`). "
            "bcrypt's limit is "
            f"what every core hashing and nothing else gives: one cost-{o.bcrypt_rounds} hash took "
            f"{r.hash_seconds * 1000:.0f} ms in the bench process just before "
            f"(`referral.security._hash_sync`, median of {names.HASH_SAMPLES}), "
            f"so {os.cpu_count()} cores / that = **{r.bcrypt_limit:.2f} logins/s**. The same hash in a thread at "
            f"nice {HASHING_NICENESS}, the service's hashing priority, took {r.hash_seconds_niced * 1000:.0f} ms: "
            f"{_contention(r)}",
            "",
            "| | req/s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|",
            f"| getcode alone | {r.quiet.rps:,.1f} | {r.quiet.p50_ms:.2f} | {r.quiet.p99_ms:.2f} | {r.quiet.errors} |",
            f"| getcode while {o.storm_connections} connections hammer /user/auth | {r.storm.rps:,.1f} | "
            f"{r.storm.p50_ms:.2f} | {r.storm.p99_ms:.2f} | {r.storm.errors} |",
            f"| the storm itself: /user/auth | {r.storm_auth.rps:,.2f} | {r.storm_auth.p50_ms:.2f} | "
            f"{r.storm_auth.p99_ms:.2f} | {r.storm_auth.errors} |",
            "",
            f"Logins during the storm: {r.storm_auth.rps:.2f}/s = "
            f"**{_ratio(r.storm_auth.rps, r.bcrypt_limit):.2f}x** bcrypt's limit; getcode's p99 "
            f"**{_ratio(r.storm.p99_ms, r.quiet.p99_ms):.2f}x** quiet.",
        ]
    lines += ["", "### Scale", "", "| measure | small | large | large / small |", "|---|---:|---:|---:|"]
    for label, by_size in (
        ("getcode p50 (cache off), {small:,} vs {big:,} users", r.scale_getcode),
        ("/referals/list 100-row page p50, {small:,} vs {big:,} referrals", r.scale_list),
        ("/refer/stats p50, {small:,} vs {big:,} referrals", r.scale_stats),
    ):
        if len(by_size) == 2:
            small, big = sorted(by_size)
            a, b = by_size[small], by_size[big]
            name = label.format(small=small, big=big)
            lines.append(f"| {name} | {a.p50_ms:.2f} ms | {b.p50_ms:.2f} ms | {_ratio(b.p50_ms, a.p50_ms):.2f}x |")
    lines += ["", "Peak RSS (VmHWM) of each server's largest process (the worker that served the requests):", ""]
    lines += [f"- {name}: {mib:.1f} MiB" for name, mib in r.peak_rss_mib.items()]
    lines += _scaling(r)
    lines += _webhooks(r)
    lines += ["", "### Targets", "", "| target | measured | limit | met |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.limit} | {t.verdict} |" for t in targets(r)]
    lines += _rounds(r)
    lines += ["", f"![requests/s per endpoint against the ceilings]({o.chart.name})"]
    return "\n".join(lines)


def _contention(r: Results) -> str:
    x = _ratio(r.hash_seconds_niced, r.hash_seconds)
    if x < 1.15:
        return f"{x:.2f}x, nothing else was competing for the cores."
    return (
        f"{x:.2f}x, other processes on the machine were taking the cores first (a thread at nice {HASHING_NICENESS} "
        "gets a small fraction of a core's share next to one at nice 0), and the service's hashing threads lose to "
        "them the same way."
    )


def _driver(backend: str) -> str:
    return "asyncpg (`pool.fetchrow` / `pool.fetch`)" if backend == "pg" else "aiosqlite"


def _features(r: Results) -> list[str]:
    f = r.features
    if not f:
        return []
    ceiling = r.rows.get(names.CEILING)
    lines = [
        "",
        "### What each feature costs on cached getcode",
        "",
        "The same service and database, cached getcode, one server per setting, measured in the same "
        "interleaved rounds as the ceilings above: the production settings with the access log off and on, all "
        "three features off, and each feature alone on top of that. A feature's cost per request, by req/s, is "
        "1/(req/s with it) - 1/(req/s without it); by CPU, the difference of the CPU time per request: the "
        "steadier of the two here.",
        "",
        "| service | req/s | p50 ms | p99 ms | CPU us/req | vs ceiling |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, res in f.items():
        label = FEATURE_LABELS.get(name, name)
        lines.append(
            f"| {label} | {res.rps:,.1f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} | {_cpu(res)} | {_both(res, ceiling)} |"
        )
    for name, why in r.todo.items():
        if name in (names.ONLY_METRICS, names.ONLY_ACCESS_LOG, names.HOT_LOGGED):
            lines.append(f"| {name} | {why} | | | | |")
    pairs = [
        ("rate limiting (RATE_LIMIT=on, limits not reached)", names.ONLY_RATE_LIMIT, names.ALL_OFF),
        ("metrics (METRICS=on)", names.ONLY_METRICS, names.ALL_OFF),
        ("access log (ACCESS_LOG=on)", names.ONLY_ACCESS_LOG, names.ALL_OFF),
        ("production settings, access log off, vs all three off", names.HOT, names.ALL_OFF),
        ("production settings with the access log, vs all three off", names.HOT_LOGGED, names.ALL_OFF),
        ("the access log on top of the production settings", names.HOT_LOGGED, names.HOT),
    ]
    lines += [
        "",
        "| feature | with: req/s | without: req/s | with / without | cost per request, by req/s | by CPU per request |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [(label, f.get(on), f.get(off)) for label, on, off in pairs]
    memory, shared = _redis_pair(r)
    if memory and shared:
        rows.append(
            (
                "REDIS_URL (the code cache and limits in Redis) vs in process, one worker (scaling table)",
                shared.get(names.HOT),
                memory.get(names.HOT),
            )
        )
    for label, a, b in rows:
        if a is None or b is None:
            continue
        cpu = f"{a.cpu_us - b.cpu_us:.1f} us" if a.cpu_us is not None and b.cpu_us is not None else "-"
        lines.append(
            f"| {label} | {a.rps:,.1f} | {b.rps:,.1f} | {_ratio(a.rps, b.rps):.2f}x | {_cost_us(a, b):.1f} us | {cpu} |"
        )
    return lines + _limiter(r)


def _limiter(r: Results) -> list[str]:
    if not r.limiter_us:
        return []
    lines = [
        "",
        "Rate limiting's counter by the number of clients in the window (`bench/limiter.py`, in process): "
        "one hit of the per-IP limit with limits' own MemoryStorage and with the service's "
        "`InProcessCounters`, both under limits' sliding window counter.",
        "",
        "| clients in the window | limits' MemoryStorage: us a hit | InProcessCounters: us a hit |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {clients:,} | {library:,.1f} | {ours:,.1f} |" for clients, (library, ours) in r.limiter_us.items()]
    return lines


def _redis_pair(r: Results) -> tuple[dict[str, LoadResult] | None, dict[str, LoadResult] | None]:
    return r.scaling.get("1 worker, in-process cache"), r.scaling.get("1 worker, Redis (REDIS_URL)")


def _scaling(r: Results) -> list[str]:
    if not r.scaling and not r.scaling_note:
        return []
    base = next(iter(r.scaling.values()), {})
    lines = [
        "",
        "### Workers and the Redis code cache",
        "",
        "The same database, production settings, WORKERS=N, with and without REDIS_URL (a Redis database "
        f"flushed before: {r.options.redis_url}), measured in interleaved rounds. **Caveat**: this machine has "
        f"{os.cpu_count()} cores, and wrk (one thread), PostgreSQL and Redis run on them too: a second worker "
        "has no core of its own, so these rows show what the settings cost, not how the service scales on a "
        "machine with cores to spare.",
        "",
        "| configuration | cached getcode req/s | p99 ms | CPU us/req | vs first row | /referals/register req/s "
        "| p99 ms | CPU us/req | vs first row |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in r.scaling.items():
        cells = [name]
        for row in (names.HOT, names.REGISTER):
            res, first = rows.get(row), base.get(row)
            if res is None:
                cells += ["-", "-", "-", "-"]
                continue
            cells += [f"{res.rps:,.1f}", f"{res.p99_ms:.2f}", _cpu(res), _both(res, first)]
        lines.append("| " + " | ".join(cells) + " |")
    if r.scaling_note:
        lines += ["", r.scaling_note]
    return lines


def _webhooks(r: Results) -> list[str]:
    w = r.webhooks
    if w is None:
        return [] if "webhooks" not in r.todo else ["", "### Webhooks", "", r.todo["webhooks"]]
    lines = [
        "",
        "### Webhooks",
        "",
        "Three services on the main database, measured in their own interleaved rounds: without WEBHOOK_URLS, "
        "with a receiver that answers 204 at once, and with a receiver that never answers (`bench/receiver.py`; "
        "every attempt is held until WEBHOOK_TIMEOUT, 10 s, WEBHOOK_CONCURRENCY=8 at a time, behind a backlog "
        f"made by {r.options.seconds:g} s of registrations before the rounds; {w.hanging_pending:,} deliveries "
        "were still pending after them). Registrations on the service with WEBHOOK_URLS record an event each "
        "and deliver it meanwhile.",
        "",
        "| row | req/s | p50 ms | p99 ms | errors | CPU us/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, res in w.rows.items():
        lines.append(f"| {name} | {res.rps:,.1f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} | {res.errors} | {_cpu(res)} |")
    drained = (
        f"drained in {w.drain_seconds:.1f} s, {w.drain_rate:,.0f} deliveries/s" if w.drain_seconds else "not drained"
    )
    lines += [
        "",
        f"The drain: {w.drain_events:,} events recorded in one transaction on the small database while the "
        "receiver was down, one worker (WEBHOOK_CONCURRENCY=8, WEBHOOK_RETRY_SCHEDULE=500ms,1s,2s) trying them "
        "against the refused port for a second, then the receiver started; timed from its start until no "
        f"delivery was pending: **{drained}** (deliveries by state at the end: "
        f"{', '.join(f'{state} {n:,}' for state, n in sorted(w.drain_states.items()))}).",
    ]
    return lines


def _rounds(r: Results) -> list[str]:
    if r.options.rounds < 2 or not r.rounds:
        return []
    lines = [
        "",
        "<details><summary>Every round (req/s), in the order measured</summary>",
        "",
        "| row | " + " | ".join(f"round {n}" for n in range(1, r.options.rounds + 1)) + " | spread |",
        "|---|" + "---:|" * (r.options.rounds + 1),
    ]
    for name, results in r.rounds.items():
        rates = [res.rps for res in results]
        spread = f"{(max(rates) - min(rates)) / max(rates):.0%}" if max(rates) else "-"
        lines.append(f"| {name.replace('|', ': ')} | " + " | ".join(f"{x:,.1f}" for x in rates) + f" | {spread} |")
    lines += ["", "</details>"]
    return lines


def update_results_file(path: Path, backend: str, section: str) -> None:
    """Replace this backend's section of `path` (between its markers), keeping everything else."""
    start, end = f"<!-- bench:{backend}:start -->", f"<!-- bench:{backend}:end -->"
    block = f"{start}\n{section}\n{end}"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.is_file() else HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        notes = text.find("\n## Notes")
        text = text + "\n" + block + "\n" if notes < 0 else text[:notes] + "\n" + block + "\n" + text[notes:]
    path.write_text(text)


def _is_reference(name: str) -> bool:
    return "ceiling" in name or name.startswith("bare Sanic")


def chart(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [name for name in ROW_ORDER if name in r.rows]
    rates = [r.rows[n].rps for n in rows]
    colors = ["#888888" if _is_reference(n) else "#2a7ab9" for n in rows]
    labels = [ROW_LABELS.get(n, n) for n in rows]
    figure, axes = plt.subplots(figsize=(10, 0.5 * len(rows) + 1.6))
    bars = axes.barh(labels, rates, color=colors)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("requests/s (log scale); grey: ceilings; in brackets: vs its ceiling")
    for name, bar, rate in zip(rows, bars, rates, strict=True):
        reference = r.rows.get(names.DB_CEILING_OF.get(name, ""))
        if name in (names.HOT, names.CEILING_WITH_EXT):
            reference = r.rows.get(names.CEILING)
        elif name == names.HOT_LOGGED:
            reference = r.rows.get(names.LOG_CEILING)
        share = f" ({rate / reference.rps:.2f}x)" if reference and reference.rps else ""
        axes.text(rate, bar.get_y() + bar.get_height() / 2, f" {rate:,.0f}{share}", va="center", fontsize=8)
    title = BACKEND_TITLES[r.options.backend]
    axes.set_title(f"{title}, {r.options.users:,} users, {os.cpu_count()} CPUs, {r.started:%Y-%m-%d}")
    axes.set_xlim(right=max(rates) * 4)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
