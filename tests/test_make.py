"""The Makefile's set-up and the requirements files, without building a real venv.

A fake `python` (a shell script standing in for the interpreter and for the venv it makes) and a fake
`npm` drive the Makefile's own logic: the Python version check, rebuilding a broken venv, and the ReDoc
step that never stops the set-up. The declared requirements are checked against every import.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDOC_VERSION = re.search(r"^REDOC_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
REDOC_LINE = re.compile(r"^ReDoc unavailable: (.+); Swagger UI works$", re.M)
DEV_ONLY = {"pytest", "sanic-testing", "playwright", "schemathesis", "matplotlib", "ruff", "jsonschema-rs"}

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

# Answers `-c <check>` with its version (failing below 3.11, as the real check does) and makes a "venv"
# holding a copy of itself for `-m venv DIR`; `-m pip ...` succeeds.
FAKE_PYTHON = """version={version}
case "$1" in
  -c) echo "$version"; case "$version" in 3.1[1-9]*|3.[2-9]*) exit 0;; *) exit 1;; esac;;
  -m) if [ "$2" = venv ]; then mkdir -p "$3/bin" && echo "version = $version" > "$3/pyvenv.cfg" \
        && cp "$0" "$3/bin/python"; fi; exit 0;;
esac
exit 1
"""


def fake_command(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


def fake_python(path: Path, version: str = "3.11.7") -> Path:
    return fake_command(path, FAKE_PYTHON.format(version=version))


def make(*args: str | Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    command = ["make", "--no-print-directory", "-C", str(ROOT), *map(str, args)]
    env = {**os.environ, "PATH": path} if path else None
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)  # noqa: S603


def redoc_stamp(venv: Path) -> Path:
    return venv / "share" / "redoc" / f".installed-{REDOC_VERSION}"


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A healthy (fake) venv: the Makefile uses it as it is."""
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python")
    (venv / "pyvenv.cfg").write_text("version = 3.11.7\n")
    return venv


# --- the Python version check and broken venvs ---


def test_too_old_python_is_refused_with_what_to_do(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "python3", "3.10.13")
    done = make(f"PYTHON={python}", f"VENV={tmp_path / 'venv'}", "refers-run")
    assert done.returncode != 0
    assert "needs Python 3.11 or newer" in done.stderr
    assert f"'{python}' is Python 3.10.13" in done.stderr
    assert "make PYTHON=python3.12 refers-run" in done.stderr
    assert not (tmp_path / "venv").exists()


def test_python_that_does_not_run_is_named(tmp_path: Path) -> None:
    shim = fake_command(tmp_path / "python3", "exit 127\n")  # a pyenv shim without its version, say
    done = make("PYTHON=python3", f"VENV={tmp_path / 'venv'}", "venv", path=f"{tmp_path}:{os.environ['PATH']}")
    assert done.returncode != 0
    assert f"'python3' ({shim}) does not run" in done.stderr


def test_missing_python_is_named(tmp_path: Path) -> None:
    done = make("PYTHON=no-such-python3", f"VENV={tmp_path / 'venv'}", "venv")
    assert done.returncode != 0
    assert "'no-such-python3' is not found" in done.stderr


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda venv: fake_python(venv / "bin" / "python", "3.10.13"), "it was made by Python 3.10.13"),
        (lambda venv: (venv / "bin" / "python").unlink(), "its python does not run or has no pip"),
        (lambda venv: (venv / "pyvenv.cfg").unlink(), "it has no pyvenv.cfg"),
    ],
    ids=["older-python", "python-gone", "half-made"],
)
def test_broken_venv_is_rebuilt(tmp_path: Path, venv: Path, break_it, reason: str) -> None:
    (venv / "leftover").touch()
    break_it(venv)
    done = make(f"PYTHON={fake_python(tmp_path / 'python3')}", f"VENV={venv}", venv / "pyvenv.cfg")
    assert done.returncode == 0, done.stderr
    assert f"rebuilding {venv}: {reason}" in done.stdout
    assert not (venv / "leftover").exists()
    assert "3.11.7" in (venv / "pyvenv.cfg").read_text()


def test_healthy_venv_is_reused(tmp_path: Path, venv: Path) -> None:
    (venv / "leftover").touch()
    done = make("PYTHON=no-such-python3", f"VENV={venv}", venv / "pyvenv.cfg")
    assert done.returncode == 0, done.stderr
    assert (venv / "leftover").exists()


def test_refers_run_installs_the_runtime_and_test_the_dev_requirements(venv: Path) -> None:
    run = make("-n", f"VENV={venv}", "refers-run").stdout
    assert "-r requirements.txt" in run
    assert "requirements-dev.txt" not in run
    for target in ("test", "lint", "format", "bench"):
        assert "-r requirements-dev.txt" in make("-n", f"VENV={venv}", target).stdout, target


def test_missing_icu_is_named_before_pip_runs(tmp_path: Path, venv: Path) -> None:
    """PyICU has no wheel: without ICU to build against, make says what to install instead of a compiler error."""
    no_icu = 'case "$2" in "import icu") exit 1;; esac\n' + FAKE_PYTHON.format(version="3.11.7")
    fake_command(venv / "bin" / "python", no_icu)
    fake_command(tmp_path / "bin" / "pkg-config", "exit 1\n")
    done = make(f"VENV={venv}", venv / ".installed-requirements", path=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert done.returncode != 0
    assert "libicu-dev pkg-config g++" in done.stderr
    assert "pip install" not in done.stdout
    assert not (venv / ".installed-requirements").exists()


# --- ReDoc: any failure is one line and the set-up goes on ---


def test_redoc_without_npm(venv: Path) -> None:
    done = make(f"VENV={venv}", "NPM=no-such-npm", redoc_stamp(venv))
    assert done.returncode == 0, done.stderr
    assert REDOC_LINE.findall(done.stdout) == ["npm not found"]
    assert not redoc_stamp(venv).exists()


def test_redoc_when_npm_fails(tmp_path: Path, venv: Path) -> None:
    npm = fake_command(
        tmp_path / "npm",
        "echo 'npm error code ECONNREFUSED' >&2\n"
        "echo 'npm error FetchError: request to http://127.0.0.1:9/redoc failed' >&2\n"
        "exit 1\n",
    )
    done = make(f"VENV={venv}", f"NPM={npm}", redoc_stamp(venv))
    assert done.returncode == 0, done.stderr
    assert REDOC_LINE.findall(done.stdout) == [
        f"npm pack redoc@{REDOC_VERSION} failed: FetchError: request to http://127.0.0.1:9/redoc failed"
    ]
    assert not redoc_stamp(venv).exists()


def redoc_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("redoc.standalone.js", b"/* redoc */"), ("redoc.standalone.js.LICENSE.txt", b"MIT")):
            info = tarfile.TarInfo(f"package/bundles/{name}")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


@pytest.fixture
def npm_with_tarball(tmp_path: Path) -> tuple[Path, str]:
    """A fake npm whose `pack` leaves a ReDoc-shaped tarball; and that tarball's sha512 as npm writes it."""
    tarball = tmp_path / "redoc.tgz"
    tarball.write_bytes(redoc_tarball())
    npm = fake_command(tmp_path / "npm", f'cp {tarball} "redoc-{REDOC_VERSION}.tgz"\n')
    return npm, base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_redoc_with_a_bad_checksum(venv: Path, npm_with_tarball: tuple[Path, str]) -> None:
    npm, _ = npm_with_tarball
    done = make(f"VENV={venv}", f"NPM={npm}", redoc_stamp(venv))
    assert done.returncode == 0, done.stderr
    assert REDOC_LINE.findall(done.stdout) == [f"redoc-{REDOC_VERSION}.tgz does not match its sha512"]
    assert not (venv / "share" / "redoc" / "redoc.standalone.js").exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_redoc_unpacked_where_the_service_reads_it(venv: Path, npm_with_tarball: tuple[Path, str]) -> None:
    npm, sha512 = npm_with_tarball
    done = make(f"VENV={venv}", f"NPM={npm}", f"REDOC_SHA512={sha512}", redoc_stamp(venv))
    assert done.returncode == 0, done.stderr
    assert not REDOC_LINE.search(done.stdout)
    assert (venv / "share" / "redoc" / "redoc.standalone.js").read_bytes() == b"/* redoc */"
    assert sorted(path.name for path in (venv / "share" / "redoc").iterdir()) == [
        f".installed-{REDOC_VERSION}",
        "redoc.standalone.js",
        "redoc.standalone.js.LICENSE.txt",
    ]


# --- requirements: every import declared, the runtime file lean ---


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
        elif line:
            names.add(normalise(re.match(r"[A-Za-z0-9._-]+", line).group()))
    return names


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions(*folders: str) -> dict[str, str]:
    """Distribution name -> a file importing it, for every third-party import under `folders`."""
    first_party = {"referral", "tests", "bench"}
    distributions = packages_distributions()
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in (name.split(".")[0] for name in modules):
                    if module in sys.stdlib_module_names or module in first_party:
                        continue
                    for distribution in distributions.get(module, [f"<{module}: not installed>"]):
                        found.setdefault(normalise(distribution), str(path.relative_to(ROOT)))
    return found


def test_every_import_of_the_service_is_a_runtime_requirement() -> None:
    runtime = requirement_names(ROOT / "requirements.txt")
    imported = imported_distributions("referral", "alembic")
    assert {name: where for name, where in imported.items() if name not in runtime} == {}


def test_every_import_of_tests_and_bench_is_declared() -> None:
    declared = requirement_names(ROOT / "requirements-dev.txt")
    imported = imported_distributions("tests", "bench")
    assert {name: where for name, where in imported.items() if name not in declared} == {}


def test_runtime_requirements_hold_no_tools() -> None:
    assert requirement_names(ROOT / "requirements.txt") & DEV_ONLY == set()
    assert requirement_names(ROOT / "requirements-dev.txt") >= DEV_ONLY


# --- make migrate says where the database is ---


def test_migrate_prints_the_revision_it_reached(tmp_path: Path, venv: Path) -> None:
    calls = tmp_path / "alembic-calls"
    fake_command(venv / "bin" / "alembic", f'echo "$*" >> {calls}\n[ "$1" = current ] && echo "0007 (head)"\nexit 0\n')
    done = make(f"VENV={venv}", "NPM=no-such-npm", "migrate")
    assert done.returncode == 0, done.stderr
    assert "make: database at revision 0007 (head)" in done.stdout.splitlines()
    assert calls.read_text().splitlines() == ["upgrade head", "current"]


def test_migrate_fails_when_the_revision_cannot_be_read(venv: Path) -> None:
    script = '[ "$1" = current ] && { echo "alembic: cannot connect" >&2; exit 1; }\nexit 0\n'
    fake_command(venv / "bin" / "alembic", script)
    done = make(f"VENV={venv}", "NPM=no-such-npm", "migrate")
    assert done.returncode != 0
    assert "alembic: cannot connect" in done.stderr
    assert "database at revision" not in done.stdout
