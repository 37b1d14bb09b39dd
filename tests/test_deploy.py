"""The systemd unit in deploy/: `systemd-analyze verify` finds nothing to say about it (skipped without
systemd-analyze, a failure under REQUIRE_SYSTEMD=1), and it runs the service the way the tests stop it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import ROOT, require

UNIT = ROOT / "deploy" / "referral.service"
INSTALLED_AT = "/opt/referral"


def test_the_systemd_unit_verifies(tmp_path: Path):
    tool = shutil.which("systemd-analyze")
    require("systemd", None if tool else "systemd-analyze is not installed")
    # verify checks that ExecStart's program exists: point the unit at this checkout's venv
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_AT, str(ROOT)))
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if UNIT.name in line]
    assert done.returncode == 0, done.stdout + done.stderr
    assert complaints == []


def test_the_unit_starts_python_dash_m_referral_and_stops_it_with_sigterm_to_the_main_process():
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    assert settings["ExecStart"] == f"{INSTALLED_AT}/.venv/bin/python -m referral"
    assert (settings["KillSignal"], settings["KillMode"]) == ("SIGTERM", "mixed")  # as tests/test_stop.py
    assert int(settings["TimeoutStopSec"]) > 15  # Sanic's GRACEFUL_SHUTDOWN_TIMEOUT
    assert settings["RestartPreventExitStatus"] == "2"  # a bad setting or a database not migrated
