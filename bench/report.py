"""The bench's output: a markdown section (printed and kept in RESULTS.md) and a PNG bar chart."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.load import LoadResult
    from bench.run import Results

BACKEND_TITLES = {"sqlite": "SQLite", "pg": "PostgreSQL"}
HEADER = """# Benchmark results

Produced by `make bench` (SQLite) and `make bench ARGS=--pg` (PostgreSQL); each run rewrites its own
section below and leaves the rest of this file alone. How to read them and what was fixed: see the
notes at the end.
"""


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    limit: str
    met: bool


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


def _scale_target(name: str, by_size: dict[int, LoadResult], limit: str) -> Target:
    """p50 at the larger size over p50 at the smaller one, at most 1.5x."""
    small, big = sorted(by_size)
    x = _ratio(by_size[big].p50_ms, by_size[small].p50_ms)
    measured = f"{by_size[big].p50_ms:.2f} / {by_size[small].p50_ms:.2f} ms = {x:.2f}x"
    return Target(name.format(big=big, small=small), measured, limit, x <= 1.5)


def targets(r: Results) -> list[Target]:
    o = r.options
    found: list[Target] = []
    ceiling = r.endpoints.get("ceiling")
    hot = r.endpoints.get("getcode (cache hot)")
    if ceiling and hot:
        x = _ratio(hot.rps, ceiling.rps)
        found.append(Target("cached getcode vs ceiling (req/s)", f"{x:.2f}x", ">= 0.7x", x >= 0.7))
    if r.quiet and r.storm:
        x = _ratio(r.storm.p99_ms, r.quiet.p99_ms)
        found.append(
            Target(
                "getcode p99 in a login storm vs quiet",
                f"{r.storm.p99_ms:.2f} / {r.quiet.p99_ms:.2f} ms = {x:.2f}x",
                "<= 3x",
                x <= 3,
            )
        )
    if len(r.scale_list) == 2:
        found.append(_scale_target("list page p50, {big:,} vs {small:,} referrals", r.scale_list, "<= 1.5x"))
    if len(r.scale_getcode) == 2:
        limit = "<= 1.5x" if max(r.scale_getcode) >= 1_000_000 else "<= 1.5x (the target is at 1,000,000 users)"
        found.append(_scale_target("getcode p50 (cache off), {big:,} vs {small:,} users", r.scale_getcode, limit))
    service_rss = max((v for k, v in r.peak_rss_mib.items() if k.startswith("service")), default=0.0)
    found.append(Target("peak RSS of the service worker", f"{service_rss:.1f} MiB", "< 150 MiB", service_rss < 150))
    if o.users < 1_000_000:
        found.append(Target("run at 1,000,000 users", f"{o.users:,} users", "`--users 1000000`", False))
    return found


def all_met(r: Results) -> bool:
    return all(t.met for t in targets(r))


def _row(name: str, res: LoadResult, ceiling_rps: float | None) -> str:
    x = f"{_ratio(res.rps, ceiling_rps):.2f}x" if ceiling_rps else "-"
    return f"| {name} | {res.rps:,.1f} | {res.p50_ms:.2f} | {res.p99_ms:.2f} | {res.errors} | {x} |"


def markdown(r: Results) -> str:
    o = r.options
    ceiling = r.endpoints.get("ceiling")
    ceiling_rps = ceiling.rps if ceiling else None
    lines = [
        f"## {BACKEND_TITLES[o.backend]}: {o.users:,} users",
        "",
        f"Run {r.started:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs ({_cpu_model()}), "
        f"Python {platform.python_version()}. Service: `python -m referral`, one worker, access log off, "
        f"BCRYPT_ROUNDS=12, RATE_LIMIT=off, code cache TTL 60 s (0 where it says cache disabled). "
        f"Load: wrk, 1 thread, {o.connections} connections ({o.storm_connections} for /user/auth), "
        f"{o.seconds:g} s per row after a 1 s warm-up for getcode. Seeded in bulk in {r.seed_seconds:.0f} s: "
        f"{o.users:,} users with one code each (all sharing one precomputed bcrypt cost-12 hash), "
        f"{o.small_referrals:,} and {o.referrals:,} referrals of two referrers, plus a {o.small_users:,}-user "
        "database for the scale row.",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | errors | vs ceiling |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, res in r.endpoints.items():
        label = "ceiling: bare Sanic, getcode's JSON" if name == "ceiling" else name
        lines.append(_row(label, res, ceiling_rps))
    lines += [
        "",
        "getcode (cache hot) cycles through 1,000 emails that stay cached; getcode (cache disabled) asks for "
        "random emails among all users on a server with CODE_CACHE_TTL=0. /referals/register registers a new "
        "email (no password) each time; /referals/list reads the first 100-row page of a referrer with "
        f"{o.small_referrals:,} referrals; /refer/update_code extends the codes of 50 users in turn; "
        "/user/auth logs in with the right password (one bcrypt check at cost 12 each, run in a thread).",
    ]
    if r.quiet and r.storm and r.storm_auth:
        lines += [
            "",
            "### Isolation: getcode alone and during a login storm",
            "",
            f"getcode (cache hot) at a steady pace for {2 * o.seconds:g} s: {o.isolation_connections} connections, "
            "each pausing 2 ms between requests (wrk's `delay()`), so latency is the server's, not a queue of our own "
            "making. Logins run bcrypt in a pool of (cores - 1) threads at nice 10 (`referral/security.py`).",
            "",
            "| | req/s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|",
            f"| alone | {r.quiet.rps:,.1f} | {r.quiet.p50_ms:.2f} | {r.quiet.p99_ms:.2f} | {r.quiet.errors} |",
            f"| while {o.storm_connections} connections hammer /user/auth | {r.storm.rps:,.1f} | "
            f"{r.storm.p50_ms:.2f} | {r.storm.p99_ms:.2f} | {r.storm.errors} |",
            f"| the storm itself: /user/auth | {r.storm_auth.rps:,.1f} | {r.storm_auth.p50_ms:.2f} | "
            f"{r.storm_auth.p99_ms:.2f} | {r.storm_auth.errors} |",
        ]
    lines += ["", "### Scale", "", "| measure | small | large | large / small |", "|---|---:|---:|---:|"]
    for label, by_size in (
        ("getcode p50 (cache off), {small:,} vs {big:,} users", r.scale_getcode),
        ("/referals/list 100-row page p50, {small:,} vs {big:,} referrals", r.scale_list),
    ):
        if len(by_size) == 2:
            small, big = sorted(by_size)
            a, b = by_size[small], by_size[big]
            name = label.format(small=small, big=big)
            lines.append(f"| {name} | {a.p50_ms:.2f} ms | {b.p50_ms:.2f} ms | {_ratio(b.p50_ms, a.p50_ms):.2f}x |")
    lines += ["", "Peak RSS (VmHWM) of each server's worker process:", ""]
    lines += [f"- {name}: {mib:.1f} MiB" for name, mib in r.peak_rss_mib.items()]
    if r.stock:
        lines += [
            "",
            "### Connection handling: the stock `databases` SQLite backend vs ours (same run, cache off)",
            "",
            "| endpoint | stock (SQLITE_POOL=off) req/s | p50 ms | pooled (ours) req/s | p50 ms | gain |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, (stock, pooled) in r.stock.items():
            lines.append(
                f"| {name} | {stock.rps:,.1f} | {stock.p50_ms:.2f} | {pooled.rps:,.1f} | {pooled.p50_ms:.2f} | "
                f"{_ratio(pooled.rps, stock.rps):.1f}x |"
            )
    lines += ["", "### Targets", "", "| target | measured | limit | met |", "|---|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.limit} | {'yes' if t.met else '**no**'} |" for t in targets(r)]
    lines += ["", f"![requests/s per endpoint against the ceiling]({o.chart.name})"]
    return "\n".join(lines)


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
    return name == "ceiling" or name.startswith("bare Sanic")


def chart(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(r.endpoints)
    rates = [r.endpoints[n].rps for n in names]
    colors = ["#888888" if _is_reference(n) else "#2a7ab9" for n in names]
    labels = ["ceiling (bare Sanic)" if n == "ceiling" else n for n in names]
    figure, axes = plt.subplots(figsize=(9, 0.55 * len(names) + 1.6))
    bars = axes.barh(labels, rates, color=colors)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("requests/s (log scale)")
    ceiling = r.endpoints.get("ceiling")
    if ceiling:
        axes.axvline(ceiling.rps, color="#888888", linestyle="--", linewidth=1)
    for name, bar, rate in zip(names, bars, rates, strict=True):
        share = f" ({rate / ceiling.rps:.2f}x)" if ceiling and name != "ceiling" else ""
        axes.text(rate, bar.get_y() + bar.get_height() / 2, f" {rate:,.0f}{share}", va="center", fontsize=8)
    title = BACKEND_TITLES[r.options.backend]
    axes.set_title(f"{title}, {r.options.users:,} users, one worker, {os.cpu_count()} CPUs, {r.started:%Y-%m-%d}")
    axes.set_xlim(right=max(rates) * 4)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
