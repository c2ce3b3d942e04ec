"""`asterisk-agent ehr outbox`: what is queued, without PHI on screen."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from asterisk_agent.ehr import messages as m
from asterisk_agent.ehr.cli import outbox_table
from asterisk_agent.ehr.outbox import Outbox

from .conftest import ROOT

PATIENT = m.Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12), "555-0101")


def fill(path) -> tuple[str, str]:
    box = Outbox(path)
    note = box.put(m.chart_note(m.header(m.Facility()), PATIENT, "Caller message",
                                "my knee hurts since Tuesday"), PATIENT.id)
    booking = box.put(m.book(m.header(m.Facility()), m.Appointment(
        "A-1", PATIENT, "DRLEE", dt.datetime(2030, 1, 7, 9), 20, "knee pain")), PATIENT.id)
    box.attempted(booking.id)
    box.failed(booking, "slot 2030-01-07 09:00 with DRLEE is not available")
    box.close()
    return note.control_id, booking.control_id


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asterisk_agent.ehr.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_the_outbox_listing_shows_ids_and_status_but_no_phi(tmp_path):
    note, booking = fill(tmp_path / "o.db")
    out = run("outbox", "--outbox", str(tmp_path / "o.db"))
    assert out.returncode == 0, out.stderr
    assert note in out.stdout and booking in out.stdout
    assert "MDM^T02" in out.stdout and "SRM^S01" in out.stdout and "not available" in out.stdout
    assert "1 pending, 1 failed" in out.stdout
    for phi in ("Rivera", "Ana", "1984", "19840312", "555-0101", "knee", "Tuesday", "MRN1001"):
        assert phi not in out.stdout, phi


def test_phi_needs_a_login_to_the_store(tmp_path):
    # the default configuration's store and key are not there: no one can log in
    # (the login itself is tested with a store in tests/compliance/test_cli.py)
    fill(tmp_path / "o.db")
    out = run("outbox", "--phi", "--outbox", str(tmp_path / "o.db"))
    assert out.returncode == 2 and "key" in out.stderr, out.stderr
    assert "Rivera" not in out.stdout + out.stderr


def test_long_engine_errors_are_cut_short(tmp_path):
    fill(tmp_path / "o.db")
    box = Outbox(tmp_path / "o.db")
    [entry] = box.entries("failed")
    box.failed(entry, "x" * 300)
    table = outbox_table(box.entries(), now=entry.created + 3600)
    assert "x" * 61 not in table and "..." in table and " 60m " in table
