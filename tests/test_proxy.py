"""deploy/nginx.conf for real: Debian's nginx with the shipped site in front of `python -m referral`.

The service alone keeps a connection open for as long as bytes trickle in, would count every client behind
a proxy as the proxy, and serves /metrics to whoever asks; these tests show the shipped proxy settings fix
all three. nginx missing: skipped, or failed under REQUIRE_NGINX=1 (CI installs it).
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.databases import SQLiteTemplate
from tests.support import (
    ROOT,
    free_port,
    require,
    running_server,
    server_env,
    start_server,
    stop_server,
    wait_until_healthy,
)

NGINX = Path("/usr/sbin/nginx")
SHIPPED = ROOT / "deploy" / "nginx.conf"
TRICKLE_PAUSE = 5.0  # seconds between two bytes of a slow client
CUT_WITHIN = 30.0  # seconds by which nginx must have cut it


@dataclass
class Proxied:
    url: str  # nginx, in front
    service_url: str  # the service itself, for what nginx must not decide
    service_log: Path  # the service's output: JSON lines
    nginx_dir: Path  # nginx's prefix: its error.log and access.log


def site(listen_port: int, upstream_port: int) -> str:
    """The shipped site with only its ports changed: the test runs what ships."""
    text = SHIPPED.read_text()
    for old, new in (
        ("    listen 80;\n", f"    listen 127.0.0.1:{listen_port};\n"),
        ("    listen [::]:80;\n", ""),
        ("    server 127.0.0.1:8000;\n", f"    server 127.0.0.1:{upstream_port};\n"),
    ):
        assert text.count(old) == 1, f"{SHIPPED} no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


def main_config(prefix: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf provides around a site, with every path under `prefix`
    (`user root`: the workers must reach pytest's private tmp directory)."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp_paths = "".join(f"    {kind}_temp_path {prefix / kind};\n" for kind in kinds)
    return (
        f"{user}pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\nworker_processes 1;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log {prefix / 'access.log'};\n{temp_paths}    include {prefix / 'referral.conf'};\n}}\n"
    )


@pytest.fixture(scope="module")
def proxied(sqlite_template: SQLiteTemplate, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """The service (per-IP limit 2/minute, SANIC_PROXIES_COUNT=1 as the site's header says) and nginx in front."""
    require("nginx", None if NGINX.is_file() else f"{NGINX} is missing (apt-get install nginx-light)")
    directory = tmp_path_factory.mktemp("proxy")
    prefix = directory / "nginx"
    prefix.mkdir()
    env = server_env(
        DATABASE_URL=sqlite_template.fresh_url(directory),
        WORKERS="1",
        LOG_FORMAT="json",
        RATE_LIMIT_IP="2/minute",
        SANIC_PROXIES_COUNT="1",
    )
    service_log = directory / "service.log"
    with running_server(env, cwd=directory, log=service_log, stop_seconds=5) as (service_url, _):
        port = free_port()
        (prefix / "referral.conf").write_text(site(port, int(env["PORT"])))
        (prefix / "nginx.conf").write_text(main_config(prefix))
        nginx_log = prefix / "output.log"
        command = [str(NGINX), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]
        with nginx_log.open("wb") as output:
            nginx = start_server(command, cwd=prefix, env={"PATH": os.environ["PATH"]}, output=output)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, nginx, seconds=15, log=nginx_log)
            yield Proxied(url, service_url, service_log, prefix)
        finally:
            stop_server(nginx, seconds=5)  # SIGINT: nginx's fast shutdown


def access_lines(log: Path) -> list[dict]:
    return [
        line
        for line in (json.loads(text) for text in log.read_text().splitlines() if text.startswith("{"))
        if line.get("logger") == "referral.access"
    ]


def trickle(sock: socket.socket, data: bytes) -> tuple[float, int, bytes]:
    """Send `data` one byte every TRICKLE_PAUSE seconds until the server closes the connection (or twice
    CUT_WITHIN has passed): the seconds until then, the bytes sent and whatever came back."""
    answer, sent = b"", 0
    started = time.monotonic()
    waiting = select.poll()  # not select(): the suite's process may hold descriptors past FD_SETSIZE (1024)
    waiting.register(sock, select.POLLIN)
    try:
        while sent < len(data) and time.monotonic() - started < 2 * CUT_WITHIN:
            sock.sendall(data[sent : sent + 1])
            sent += 1
            if waiting.poll(TRICKLE_PAUSE * 1000):
                chunk = sock.recv(65536)
                if not chunk:
                    break  # closed
                answer += chunk
    except OSError:  # reset (nginx's reset_timedout_connection) or a broken pipe: cut as well
        pass
    return time.monotonic() - started, sent, answer


def slow_client(port: int, source: str, head: bytes, trickled: bytes) -> tuple[float, int, bytes]:
    """From the local address `source`: `head` at once, then `trickled` one byte at a time."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(head)
        return trickle(sock, trickled)


def test_clients_trickling_headers_or_a_body_are_cut_by_nginx_and_never_reach_the_service(proxied: Proxied):
    """Header and body trickled side by side (one wait for both); the body shows request buffering: the
    service never sees a request whose body has not fully arrived."""
    port = int(proxied.url.rsplit(":", 1)[1])
    request_line = b"GET /trickled-headers HTTP/1.1\r\n"
    headers = b"Host: referral\r\nUser-Agent: slow\r\n\r\n"
    body = b'{"email": "slow@example.com", "password": "a-fine-passphrase"}'
    post = b"POST /trickled-body HTTP/1.1\r\nHost: referral\r\nContent-Type: application/json\r\n"
    post += b"Content-Length: %d\r\n\r\n" % len(body)
    with ThreadPoolExecutor(2) as pool:
        slow_headers = pool.submit(slow_client, port, "127.0.0.4", request_line, headers)
        slow_body = pool.submit(slow_client, port, "127.0.0.5", post, body)
        header_seconds, header_bytes, header_answer = slow_headers.result()
        body_seconds, body_bytes, _ = slow_body.result()
    print(f"trickled headers cut after {header_seconds:.1f} s, a trickled body after {body_seconds:.1f} s")
    assert header_seconds < CUT_WITHIN
    assert header_bytes < len(headers)
    assert header_answer == b""  # no answer at all, let alone the service's
    assert body_seconds < CUT_WITHIN
    assert body_bytes < len(body)
    timed_out = (proxied.nginx_dir / "access.log").read_text()  # nginx logs 408 for a request it cut
    assert re.search(r'^127\.0\.0\.4 .* "GET /trickled-headers HTTP/1\.1" 408 ', timed_out, re.MULTILINE)
    assert re.search(r'^127\.0\.0\.5 .* "POST /trickled-body HTTP/1\.1" 408 ', timed_out, re.MULTILINE)

    # The service writes its access line as it answers: one more request shows its log is up to date.
    assert httpx.get(f"{proxied.url}/after-the-trickle").status_code == 404
    deadline = time.monotonic() + 5
    while not any(line["path"] == "/after-the-trickle" for line in access_lines(proxied.service_log)):
        assert time.monotonic() < deadline, "the service logged no access line for /after-the-trickle"
        time.sleep(0.1)
    paths = {line["path"] for line in access_lines(proxied.service_log)}
    assert not paths & {"/trickled-headers", "/trickled-body"}


def getcodes(base_url: str, source: str, times: int, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    """`times` getcode requests from the local address `source`, through one connection."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=base_url, transport=transport, headers=headers) as client:
        return [client.get("/refer/getcode", params={"email": "a@example.com"}) for _ in range(times)]


def statuses(answers: list[httpx.Response]) -> list[int]:
    return [answer.status_code for answer in answers]


def test_each_client_behind_the_proxy_has_its_own_per_ip_limit(proxied: Proxied):
    """Without the forwarded address every client would be nginx's 127.0.0.1 and share one limit."""
    first = getcodes(proxied.url, "127.0.0.2", 3)
    assert statuses(first) == [404, 404, 429]
    assert first[-1].headers["content-type"] == "application/problem+json"  # the service's 429, not nginx's
    # A client cannot choose its address: nginx appends the one it saw, and that is the one counted.
    assert statuses(getcodes(proxied.url, "127.0.0.2", 1, {"X-Forwarded-For": "10.9.9.9"})) == [429]
    assert statuses(getcodes(proxied.url, "127.0.0.3", 3)) == [404, 404, 429]


@pytest.mark.parametrize("path", ["/metrics", "/metrics/", "//metrics", "/%6Detrics", "/metrics?x=1"])
def test_metrics_are_refused_through_the_proxy_and_health_passes(proxied: Proxied, path: str):
    """Prometheus' endpoint stays internal in every spelling that would reach it; the probes' endpoint passes."""
    assert httpx.get(f"{proxied.url}{path}").status_code == 403
    assert httpx.get(f"{proxied.service_url}/metrics").status_code == 200  # it is nginx that refuses
    health = httpx.get(f"{proxied.url}/health")
    assert health.status_code == 200
    assert health.headers["x-request-id"]  # answered by the service
