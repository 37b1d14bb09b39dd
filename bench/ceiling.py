"""The ceilings without a database: a bare Sanic app answering getcode's JSON, served like the service.

`python -m bench.ceiling` with HOST and PORT in the environment. One worker, no database, no
validation, no cache, and no sanic-ext (Sanic loads it by itself when installed; AUTO_EXTEND is
turned off here): whatever the service reaches, relative to this, is what our own code and its
libraries cost. Two variants:

- BENCH_CEILING_EXT=1 keeps sanic-ext with its defaults, to show what that alone costs.
- BENCH_CEILING_LOG=1 is the logging ceiling: the same app writing the service's access line through
  the service's own logging set-up (`referral.logs.configure_logging`, the LOG_FORMAT in the
  environment, and the service's response middleware with its request id and access line, metrics
  off), so that the service with ACCESS_LOG=on is compared with the same line written by a bare app.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sanic import Request, Sanic, json
from sanic.response import HTTPResponse

ANSWER = {"user_id": 100, "code": "bench0000100", "exp_date": "2027-11-26T23:00:00+00:00"}


def service_access_log() -> tuple[Callable[[str], None], Callable[..., Any]] | None:
    """The service's logging set-up and access-line middleware factory, None when this tree has none."""
    try:
        from referral.logs import configure_logging
    except ImportError:
        return None
    for module in ("referral.api.access", "referral.logs"):
        try:
            finisher = getattr(__import__(module, fromlist=["response_finisher"]), "response_finisher", None)
        except ImportError:
            continue
        if finisher is not None:
            return configure_logging, finisher
    return None


def create_app(*_: object) -> Sanic:
    logged = os.environ.get("BENCH_CEILING_LOG") == "1"
    setup = service_access_log() if logged else None
    if logged and setup is None:
        raise SystemExit("BENCH_CEILING_LOG=1: this tree has no referral.logs access line to write")
    if setup is not None:
        configure_logging, response_finisher = setup
        configure_logging(os.environ.get("LOG_FORMAT", "text").lower())
        app = Sanic("bench_ceiling", configure_logging=False)
        app.config.ACCESS_LOG = False
        app.on_response(response_finisher(access=True, observe=None))
    else:
        app = Sanic("bench_ceiling")
    app.config.AUTO_EXTEND = os.environ.get("BENCH_CEILING_EXT") == "1"

    @app.get("/refer/getcode")
    async def getcode(request: Request) -> HTTPResponse:
        return json(ANSWER)

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return json({"status": "ok"})

    return app


def serve(factory: Callable[..., Sanic]) -> None:
    """Serve the app `factory` builds on HOST:PORT, one worker, no access log (every ceiling alike)."""
    from sanic.worker.loader import AppLoader

    loader = AppLoader(factory=factory)
    app = loader.load()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8001"))
    app.prepare(host=host, port=port, workers=1, single_process=False, access_log=False)
    Sanic.serve(primary=app, app_loader=loader)


def main() -> None:
    serve(create_app)


if __name__ == "__main__":
    main()
