"""The README's walk-through, run as written: its shell blocks in order against a real server, each answer
compared with the JSON the README shows under it.

A step is a fenced `sh` block right after a `<!-- walkthrough -->` comment, then a line naming the status
(e.g. `201 Created`), then a fenced `json` block with the answer. The blocks run in one bash session (so
`TOKEN` carries over) against `python -m referral` on a free port and a fresh SQLite database, with the
README's `http://127.0.0.1:8000` replaced by the server's address. A `.curlrc` in CURL_HOME makes every
curl report its status on stderr, so the commands stay as a user types them.

Answers are compared structurally: the same keys (a field the README shows that the API no longer returns
fails, and so does one it returns that the README leaves out) and the same values, except dates, tokens and
generated codes, which vary: those are compared by shape, and a value the README shows twice must come back
the same both times (the code getcode finds is the code update_code issued).

The README stays short (at most 300 lines) and links every page under `docs/`; every relative link of
the README, the docs pages and ARCHITECTURE.md points at a file that exists, and at a heading that exists
when it names one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from referral.services.codes import CODE_ALPHABET, GENERATED_CODE_LENGTH
from tests.databases import migrate
from tests.support import ROOT, require, running_server, server_env

README = ROOT / "README.md"
README_MAX_LINES = 300
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINKED_PAGES = [README, *DOCS, ROOT / "ARCHITECTURE.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
README_BASE = "http://127.0.0.1:8000"
SECRET = "readme-walkthrough-secret-key-of-at-least-32-bytes"
STEP = re.compile(
    r"<!-- walkthrough -->\n```sh\n(?P<script>.*?)```\n(?P<between>(?:(?!```).)*?)```json\n(?P<answer>.*?)```",
    re.DOTALL,
)
STATUS = re.compile(r"`(\d{3})(?: [A-Za-z ]+)?`")
MARK = "@@readme-step {}@@"
CURLRC = 'write-out = "%{stderr}@@status %{http_code}\\n"\n'
# Values that differ from run to run, by shape; anything else must come back exactly as the README shows it.
VARYING = {
    "date": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"),
    "JWT": re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+"),
    "generated code": re.compile(f"[{CODE_ALPHABET}]{{{GENERATED_CODE_LENGTH}}}"),
}
# The walk-through must go through the whole API, and delete the code last (earlier, the steps after it fail).
PATHS = (
    "/user/register",
    "/user/auth",
    "/user/token",
    "/refer/update_code",
    "/refer/getcode",
    "/referals/register",
    "/referals/list",
    "/refer/delete",
)


@dataclass(frozen=True)
class Step:
    number: int
    script: str
    status: int
    answer: Any


def walkthrough(text: str) -> list[Step]:
    steps = []
    for number, match in enumerate(STEP.finditer(text), start=1):
        statuses = STATUS.findall(match["between"])
        assert len(statuses) == 1, f"step {number}: name one status (e.g. `201 Created`) between its blocks"
        steps.append(Step(number, match["script"], int(statuses[0]), json.loads(match["answer"])))
    assert text.count("<!-- walkthrough -->") == len(steps), "a <!-- walkthrough --> mark without sh and json blocks"
    assert steps, "no <!-- walkthrough --> steps"
    return steps


def vary(value: Any) -> str | None:
    """The kind of varying value `value` is, if it is one."""
    if isinstance(value, str):
        return next((kind for kind, shape in VARYING.items() if shape.fullmatch(value)), None)
    return None


def differences(shown: Any, got: Any, where: str, seen: dict[str, Any]) -> list[str]:
    """How `got` differs from what the README shows; `seen` maps each varying value shown to the one received."""
    if isinstance(shown, dict):
        if not isinstance(got, dict):
            return [f"{where}: the README shows an object, the API answered {got!r}"]
        found = [f"{where}.{key}: the README shows it, the API no longer returns it" for key in shown.keys() - got]
        found += [f"{where}.{key}: the API returns it, the README does not show it" for key in got.keys() - shown]
        for key in shown.keys() & got.keys():
            found += differences(shown[key], got[key], f"{where}.{key}", seen)
        return found
    if isinstance(shown, list):
        if not isinstance(got, list) or len(got) != len(shown):
            return [f"{where}: the README shows {len(shown)} items, the API answered {got!r}"]
        return [
            line
            for i, (a, b) in enumerate(zip(shown, got, strict=True))
            for line in differences(a, b, f"{where}[{i}]", seen)
        ]
    kind = vary(shown)
    if kind is not None:
        if not isinstance(got, str) or not VARYING[kind].fullmatch(got):
            return [f"{where}: the README shows a {kind} ({shown!r}), the API answered {got!r}"]
        if seen.setdefault(shown, got) != got:
            return [f"{where}: the README shows {shown!r} again, but the API answered {got!r} after {seen[shown]!r}"]
        return []
    if type(got) is not type(shown) or got != shown:
        return [f"{where}: the README shows {shown!r}, the API answered {got!r}"]
    return []


def run_walkthrough(steps: list[Step], base_url: str, workdir: Path) -> tuple[dict[int, str], dict[int, list[int]]]:
    """Run the steps in one bash session: each step's stdout and the statuses of its requests."""
    lines = ["set -euo pipefail"]
    for step in steps:
        script = step.script.replace(README_BASE, base_url)
        assert ":8000" not in script, f"step {step.number} reaches the server other than as {README_BASE}"
        mark = MARK.format(step.number)
        lines += [f"printf '\\n%s\\n' '{mark}'", f"printf '%s\\n' '{mark}' >&2", script]
    (workdir / "walkthrough.sh").write_text("\n".join(lines) + "\n")
    curl_home = workdir / "curl"
    curl_home.mkdir()
    (curl_home / ".curlrc").write_text(CURLRC)
    environment = {
        # python3 as the README runs it: the venv's, ahead of the rest of PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(workdir),
        "CURL_HOME": str(curl_home),
        "LC_ALL": "C.UTF-8",
    }
    done = subprocess.run(
        ["bash", "walkthrough.sh"],  # noqa: S607
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outputs, statuses = split(done.stdout, steps), split(done.stderr, steps)
    if done.returncode != 0:
        last = max(outputs, default=steps[0].number)  # the last step that started
        pytest.fail(
            f"the walk-through stopped with exit status {done.returncode} in step {last}:\n{script_of(steps, last)}\n"
            f"stdout: {outputs.get(last, '')!r}\nstderr: {done.stderr[-2000:]}"
        )
    codes = {
        number: [int(line.split()[1]) for line in text.splitlines() if line.startswith("@@status ")]
        for number, text in statuses.items()
    }
    return outputs, codes


def split(text: str, steps: list[Step]) -> dict[int, str]:
    """`text` cut at the step marks: what each step printed."""
    parts: dict[int, str] = {}
    for step in steps:
        mark = MARK.format(step.number)
        if mark not in text:
            break
        text = text.split(mark, 1)[1]
        parts[step.number] = text
    for number in parts:
        following = MARK.format(number + 1)
        parts[number] = parts[number].split(following, 1)[0].strip()
    return parts


def script_of(steps: list[Step], number: int) -> str:
    return next(step.script for step in steps if step.number == number)


@pytest.fixture
def curl() -> None:
    """Skips without curl, which the README's examples use; a failure under REQUIRE_CURL=1."""
    require("curl", None if shutil.which("curl") else "curl is not installed (the README's examples use it)")


@pytest.fixture
def server(tmp_path: Path):
    """`python -m referral` on a free port and a freshly migrated SQLite file, as a user would run it."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'readme.db'}"
    migrate(database_url)
    environment = server_env(HOST="127.0.0.1", DATABASE_URL=database_url, SECRET_KEY=SECRET)
    with running_server(environment, cwd=tmp_path, log=tmp_path / "server.log", stop_seconds=5) as (base_url, _):
        yield base_url


def test_the_walkthrough_covers_the_api_and_deletes_last():
    steps = walkthrough(README.read_text())
    scripts = "\n".join(step.script for step in steps)
    assert [path for path in PATHS if path not in scripts] == []
    assert "/refer/delete" in steps[-1].script
    assert all("/refer/delete" not in step.script for step in steps[:-1])
    assert all(README_BASE in step.script for step in steps)


def test_the_walkthrough_runs_and_prints_what_the_readme_shows(curl: None, server: str, tmp_path: Path):
    steps = walkthrough(README.read_text())
    outputs, statuses = run_walkthrough(steps, server, tmp_path)
    seen: dict[str, Any] = {}
    problems = []
    for step in steps:
        printed = outputs.get(step.number, "")
        if statuses.get(step.number) != [step.status]:
            problems.append(f"step {step.number}: the README shows `{step.status}`, got {statuses.get(step.number)}")
        try:
            answer = json.loads(printed)
        except ValueError:
            problems.append(f"step {step.number}: printed no JSON but {printed!r}")
            continue
        problems += [f"step {step.number}: {line}" for line in differences(step.answer, answer, "answer", seen)]
    assert problems == [], "\n".join(problems)


def test_the_comparison_catches_what_it_must():
    shown = {"user_id": 1, "code": "HAM42FDV7C", "exp_date": "2026-12-03T21:15:04+00:00", "token": "eyJa.eyJb.c"}
    same_shapes = {"user_id": 1, "code": "K7QX2M9RTA", "exp_date": "2027-01-01T00:00:00+00:00", "token": "eyJx.eyJy.z"}
    assert differences(shown, same_shapes, "answer", {}) == []
    assert differences(shown, {**same_shapes, "user_id": 2}, "answer", {}) != []
    assert differences(shown, {**same_shapes, "user_id": True}, "answer", {}) != []  # a bool is not the int 1
    assert differences(shown, {**same_shapes, "exp_date": "2027-01-01"}, "answer", {}) != []
    assert differences(shown, {**same_shapes, "code": "ANN-2026"}, "answer", {}) != []
    missing = {key: value for key, value in same_shapes.items() if key != "token"}
    assert differences(shown, missing, "answer", {}) == [
        "answer.token: the README shows it, the API no longer returns it"
    ]
    assert differences(shown, {**same_shapes, "extra": 0}, "answer", {}) != []
    assert differences([shown], [same_shapes, same_shapes], "answer", {}) != []
    seen: dict[str, Any] = {}
    assert differences(shown, same_shapes, "first", seen) == []
    assert differences(shown, {**same_shapes, "code": "ZZZZZZZZZZ"}, "second", seen) != []  # shown twice, differs


def test_steps_are_read_with_their_status_and_answer():
    text = (
        "<!-- walkthrough -->\n```sh\ncurl -s http://127.0.0.1:8000/health\n```\n"
        'Answers `200 OK`:\n```json\n{"status": "ok"}\n```\n'
    )
    [step] = walkthrough(text)
    assert (step.number, step.status, step.answer) == (1, 200, {"status": "ok"})
    assert step.script == "curl -s http://127.0.0.1:8000/health\n"
    with pytest.raises(AssertionError):
        walkthrough(text.replace("`200 OK`", "200"))
    with pytest.raises(AssertionError):
        walkthrough(text + "<!-- walkthrough -->\n```sh\ntrue\n```\n")


# --- a README a user finishes, and links that lead somewhere ---


def links(text: str) -> list[str]:
    """The targets of the Markdown links of `text`, outside code blocks and code spans."""
    return LINK.findall(CODE_SPAN.sub("", FENCE.sub("", text)))


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of `text`: lower case, punctuation dropped, spaces as hyphens,
    a repeated heading numbered."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        number, unique = 0, slug
        while unique in found:
            number += 1
            unique = f"{slug}-{number}"
        found.add(unique)
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of `page` that point at no file, or at no heading of the file they name (paths
    shown relative to `root`)."""
    broken = []
    for target in links(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, file: ...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}: {target}"
        if not file.exists():
            broken.append(f"{where}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{where}: no heading with that anchor in {file.relative_to(root)}")
    return broken


def test_the_readme_is_at_most_300_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to a page under docs/"


def test_every_docs_page_is_linked_from_the_readme():
    assert DOCS, "no pages under docs/"
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README.read_text())}
    assert [page.name for page in DOCS if page.resolve() not in linked] == []


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_point_at_what_exists(page: Path):
    assert broken_links(page) == []


def test_the_link_check_catches_what_it_must(tmp_path: Path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A proxy in front\n\n## `make test`, and CI\n")
    page.write_text(
        "# Page\n\n[ok](other.md) [ok](other.md#a-proxy-in-front) [ok](other.md#make-test-and-ci) [ok](#page)\n"
        "[web](https://example.com/x) `[code](missing.md)`\n```md\n[fenced](missing.md)\n```\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) [self](#nowhere)\n"
    )
    found = [line.split(": ", 2)[1:] for line in broken_links(page, tmp_path)]
    assert found == [
        ["missing.md", "no such file"],
        ["other.md#nowhere", "no heading with that anchor in other.md"],
        ["#nowhere", "no heading with that anchor in page.md"],
    ]
    assert anchors("# A\n## A\n## A\n") == {"a", "a-1", "a-2"}
