"""The ceiling: a bare Sanic app answering getcode's JSON, served like the service (one worker).

`python -m bench.ceiling` with HOST and PORT in the environment. No database, no validation, no
cache, and no sanic-ext (Sanic loads it by itself when installed; AUTO_EXTEND is turned off here):
whatever the service reaches, relative to this, is what our own code and its libraries cost.
With BENCH_CEILING_EXT=1 it keeps sanic-ext, to show what that alone costs.
"""

from __future__ import annotations

import os

from sanic import Request, Sanic, json
from sanic.response import HTTPResponse

ANSWER = {"user_id": 100, "code": "bench0000100", "exp_date": "2027-11-26T23:00:00+00:00"}


def create_app(*_: object) -> Sanic:
    app = Sanic("bench_ceiling")
    app.config.AUTO_EXTEND = os.environ.get("BENCH_CEILING_EXT") == "1"

    @app.get("/refer/getcode")
    async def getcode(request: Request) -> HTTPResponse:
        return json(ANSWER)

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return json({"status": "ok"})

    return app


def main() -> None:
    from sanic.worker.loader import AppLoader

    loader = AppLoader(factory=create_app)
    app = loader.load()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8001"))
    app.prepare(host=host, port=port, workers=1, single_process=False, access_log=False)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
