"""`python -m referral`: serve on HOST:PORT with WORKERS processes, settings from env and .env.

Before serving, `preflight()` checks the settings and the database's migration: either stops the start
with one line on stderr and exit status 2. `python -m referral webhooks status | retry | ping`: the outbox's
commands (`referral.outbox.commands`). Stop signals: see `referral.lifecycle`. A worker that keeps crashing
stops the service with exit status 3 (`referral.workers`).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def main() -> None:
    if sys.argv[1:2] == ["webhooks"]:
        raise SystemExit(_webhooks(sys.argv[2:]))
    # Until Sanic serves there is nothing to clean up: Ctrl-C exits at once, without a traceback. The
    # imports come after it (they are most of the start-up time).
    signal.signal(signal.SIGINT, _interrupted)

    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from referral.app import create_app
    from referral.lifecycle import hold_stop_signals, preflight
    from referral.workers import exit_status

    settings = preflight()  # also exports a generated SECRET_KEY so every worker shares it
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(host=settings.host, port=settings.port, workers=settings.workers, single_process=False)
    hold_stop_signals()
    Sanic.serve(primary=app, app_loader=loader)
    raise SystemExit(exit_status())  # 3 after a crash loop (referral.workers)


def _webhooks(args: list[str]) -> int:
    import asyncio

    from referral.lifecycle import preflight
    from referral.outbox.commands import COMMANDS, USAGE, run

    if len(args) != 1 or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    settings = preflight()  # a bad setting or a database not at the code's migration: one line, exit 2
    return asyncio.run(run(args[0], settings))


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    # Not SystemExit: raised at an arbitrary point of an import, Python may wrap it in another error.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)


if __name__ == "__main__":
    main()
