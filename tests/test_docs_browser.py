"""The API docs in a real browser: Swagger UI signs in and runs a request, ReDoc lists every operation.

Headless Debian Chromium (`/usr/bin/chromium`) driven by Playwright, against `python -m referral` on a
fresh SQLite database. The pages must load everything from the service itself: any request to
another origin is recorded, refused, and fails the test. Screenshots land in the test's tmp_path.

Skipped when Chromium is not installed or `make venv` had no npm to fetch ReDoc with, unless
REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.schemathesis.run import fresh_database, live_server
from tests.support import redoc_problem, require

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 15_000
CSP_BLOCKED_IMAGE = re.compile(r"Loading the image 'https://cdn\.redoc\.ly/\S+' violates the following Content.*")
EMAIL = "swagger-user@example.com"
PASSWORD = "swagger-password-1"


def browser_problem() -> str | None:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (make venv)"
    return None


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require("browser", browser_problem() or redoc_problem())
    workdir = tmp_path_factory.mktemp("docs-server")
    with fresh_database("sqlite", workdir) as url, live_server(url, workdir) as base_url:
        yield base_url


def test_swagger_ui_authorizes_and_runs_update_code_and_redoc_lists_every_operation(
    docs_server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import Route, sync_playwright

    base_url = docs_server
    origin = urlsplit(base_url).netloc
    registered = httpx.post(f"{base_url}/user/register", json={"email": EMAIL, "password": PASSWORD}, timeout=10)
    assert registered.status_code == 201, registered.text
    spec = httpx.get(f"{base_url}/docs/openapi.json", timeout=10).json()
    operation_ids = sorted(op["operationId"] for item in spec["paths"].values() for op in item.values())

    requests: list[str] = []
    outside: list[str] = []
    console_errors: list[str] = []

    def refuse_outside(route: Route) -> None:
        outside.append(route.request.url)
        route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route(lambda url: urlsplit(url).netloc != origin and not url.startswith("data:"), refuse_outside)
            context.on("request", lambda request: requests.append(request.url))
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
            page.on("pageerror", lambda error: console_errors.append(str(error)))

            # Swagger UI: Authorize with the OAuth 2.0 password flow (tokenUrl /user/token).
            page.goto(f"{base_url}/docs/swagger")
            page.locator(".swagger-ui .info .title").wait_for()
            page.locator("button.authorize").first.click()
            oauth = page.locator(".auth-container").filter(has_text="OAuth2Password")
            oauth.locator("#oauth_username").fill(EMAIL)
            oauth.locator("#oauth_password").fill(PASSWORD)
            with page.expect_response(lambda answer: answer.url.endswith("/user/token")) as token_answer:
                oauth.get_by_role("button", name="Authorize").click()
            assert token_answer.value.status == 200, token_answer.value.text()
            oauth.get_by_role("button", name="Logout").wait_for()  # Swagger UI holds the token now
            page.locator(".modal-ux button.btn-done").first.click()

            # Try it out on POST /refer/update_code with the documented example body.
            operation = page.locator("#operations-refer-update_code")
            operation.locator(".opblock-summary").click()
            operation.locator("button.try-out__btn").click()
            with page.expect_response(lambda answer: answer.url.endswith("/refer/update_code")) as code_answer:
                operation.locator("button.execute").click()
            assert 200 <= code_answer.value.status < 300, code_answer.value.text()
            assert code_answer.value.request.headers.get("authorization", "").startswith("Bearer ")
            shown_status = operation.locator(".live-responses-table tbody .response-col_status").first
            shown_status.wait_for()
            assert shown_status.inner_text().strip() in {"200", "201"}
            page.screenshot(path=str(tmp_path / "swagger.png"), full_page=True)

            # ReDoc: every operation of the spec has its section.
            page.goto(f"{base_url}/docs/redoc")
            page.locator("[data-section-id^='operation/']").first.wait_for()
            page.wait_for_load_state("networkidle")
            sections = page.locator("[data-section-id^='operation/']").evaluate_all(
                "nodes => nodes.map(node => node.getAttribute('data-section-id'))"
            )
            listed = sorted({section.removeprefix("operation/") for section in sections})
            assert listed == operation_ids
            page.screenshot(path=str(tmp_path / "redoc.png"), full_page=True)
        finally:
            browser.close()

    assert (tmp_path / "swagger.png").stat().st_size > 10_000
    assert (tmp_path / "redoc.png").stat().st_size > 10_000
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in requests)
    assert any(url.endswith("/docs/assets/redoc.standalone.js") for url in requests)
    assert outside == [], f"the docs pages reached outside the service: {outside}"
    # The page's CSP stops ReDoc's footer logo (an image on its CDN) before any request is made, and
    # Chromium says so in the console; anything else there (a script error, a blocked script or
    # stylesheet) fails the test.
    blocked_images = [text for text in console_errors if CSP_BLOCKED_IMAGE.fullmatch(text)]
    assert len(blocked_images) <= 1, blocked_images
    others = [text for text in console_errors if text not in blocked_images]
    assert others == [], f"errors in the browser console: {others}"
    if os.environ.get("DOCS_SCREENSHOTS"):  # keep them somewhere stable, e.g. for CI artifacts
        for name in ("swagger.png", "redoc.png"):
            shutil.copy(tmp_path / name, Path(os.environ["DOCS_SCREENSHOTS"]) / name)
