"""A/B of trees: cached getcode served by several checkouts side by side, against the bare-Sanic ceiling.

`python -m bench.ab REV [REV ...]` checks each git revision out in a worktree of its own (`.` is the
working tree as it is), seeds one small SQLite database, serves every tree with the production
settings (`bench.rows.PRODUCTION`: rate limiting, metrics and request ids on, the access log off; with
`--access-log` a second row per tree with it on), and loads each server in turn with wrk for
`--rounds` interleaved rounds. The table gives each row's median round: req/s and the CPU time its
processes spent per request, each also as a ratio to the ceiling of the same round (`bench.ceiling`).
This is how a change's cost is measured before it is recorded in bench/RESULTS.md: the machine is
shared, and only rows measured together compare.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

from bench.load import LoadResult, Wrk, ensure_wrk
from bench.rows import PRODUCTION
from bench.seed import SeedPlan, migrate, seed_sqlite, shared_password_hash
from bench.servers import Server, start_all
from tests.support import ROOT

HOT_EMAILS = 1000


def checkout(revision: str, directory: Path) -> Path:
    """A worktree of `revision` in `directory` (`.`: this checkout itself)."""
    if revision == ".":
        return ROOT
    target = directory / revision.replace("/", "-")
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(target), revision], cwd=ROOT, check=True)  # noqa: S603, S607
    return target


def measure(wrk: Wrk, server: Server, *, seconds: float, connections: int) -> LoadResult:
    cpu = server.cpu_seconds()
    result = wrk.run(
        server.url, "getcode", connections=connections, seconds=seconds, env={"BENCH_COUNT": str(HOT_EMAILS)}
    )
    cpu = server.cpu_seconds() - cpu
    return replace(result, cpu_us=cpu * 1e6 / result.requests if result.requests else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions to compare; `.` is the working tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--access-log", action="store_true", help="also each tree with ACCESS_LOG=on")
    args = parser.parse_args(argv)
    wrk = Wrk(ensure_wrk())
    with tempfile.TemporaryDirectory(prefix="referral-ab-") as temporary:
        workdir = Path(temporary)
        trees = {revision: checkout(revision, workdir) for revision in args.revisions}
        database = workdir / "ab.db"
        migrate(f"sqlite+aiosqlite:///{database}")
        seed_sqlite(database, SeedPlan(users=10 * HOT_EMAILS), shared_password_hash(4), label="ab")
        base = {"DATABASE_URL": f"sqlite+aiosqlite:///{database}", "SECRET_KEY": "ab" * 32, "SANIC_NO_MOTD": "true"}
        servers = {"ceiling": Server("ceiling", "bench.ceiling", {"PYTHONPATH": str(ROOT)}, workdir)}
        for revision, tree in trees.items():
            env = {**base, **PRODUCTION, "PYTHONPATH": str(tree), "CODE_CACHE_TTL": "60", "WORKERS": "1"}
            servers[revision] = Server(f"tree-{len(servers)}", "referral", env, workdir)
            if args.access_log:
                logged = {**env, "ACCESS_LOG": "on"}
                servers[f"{revision}, access log on"] = Server(f"tree-{len(servers)}", "referral", logged, workdir)
        start_all(list(servers.values()))
        rounds: dict[str, list[LoadResult]] = {name: [] for name in servers}
        try:
            for server in servers.values():  # warm-up: every hot email cached, the code paths run
                wrk.run(server.url, "getcode", connections=args.connections, seconds=2, env={"BENCH_COUNT": "1000"})
            for number in range(1, args.rounds + 1):
                for name, server in servers.items():
                    rounds[name].append(measure(wrk, server, seconds=args.seconds, connections=args.connections))
                print(f"round {number}: " + ", ".join(f"{n} {r[-1].rps:,.0f}" for n, r in rounds.items()), flush=True)
        finally:
            for server in servers.values():
                server.stop()
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)  # noqa: S603, S607
    print(report(rounds))


def report(rounds: dict[str, list[LoadResult]]) -> str:
    ceiling = rounds["ceiling"]
    lines = ["| tree | req/s | CPU us/req | vs ceiling: req/s | vs ceiling: CPU |", "|---|---:|---:|---:|---:|"]
    for name, results in rounds.items():
        rps = statistics.median(r.rps for r in results)
        cpu = statistics.median(r.cpu_us or 0.0 for r in results)
        by_rps = statistics.median(r.rps / c.rps for r, c in zip(results, ceiling, strict=True))
        by_cpu = statistics.median((c.cpu_us or 0.0) / (r.cpu_us or 1.0) for r, c in zip(results, ceiling, strict=True))
        lines.append(f"| {name} | {rps:,.0f} | {cpu:.1f} | {by_rps:.2f}x | {by_cpu:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
