"""`python -m referral`: serve on HOST:PORT with WORKERS processes, settings from env and .env."""

from __future__ import annotations

from sanic import Sanic
from sanic.worker.loader import AppLoader

from referral.app import create_app
from referral.config import load_settings


def main() -> None:
    settings = load_settings()  # also exports a generated SECRET_KEY so every worker shares it
    loader = AppLoader(factory=create_app)
    app = loader.load()
    app.prepare(host=settings.host, port=settings.port, workers=settings.workers, single_process=False)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
