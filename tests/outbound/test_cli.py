"""`asterisk-agent outbound check`: a campaign read as a run would read it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def check(tmp_path: Path, campaign: str, suffix: str = ".csv", dnc: str | None = None,
          at: str = "2026-11-22T10:00") -> subprocess.CompletedProcess:
    """The command against the sandbox config (its practice is in New York)."""
    conf = (ROOT / "etc" / "sandbox.conf").read_text()
    conf = conf.replace("practice_file = ", f"practice_file = {ROOT / 'etc'}/", 1)
    # the default calling rules, not the sandbox's (which rings any day, any hour)
    conf = re.sub(r"\n\[outbound\]\n[^\[]*", "\n", conf)
    if dnc is not None:
        (tmp_path / "dnc.txt").write_text(dnc)
        conf += f"\n[outbound]\ndo_not_call_file = {tmp_path / 'dnc.txt'}\n"
    (tmp_path / "agent.conf").write_text(conf)
    (tmp_path / f"c{suffix}").write_text(campaign)
    return subprocess.run(
        [sys.executable, "-m", "asterisk_agent", "outbound", "check", str(tmp_path / f"c{suffix}"),
         "--config", str(tmp_path / "agent.conf"), "--at", at],
        cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_good_campaign_lists_when_each_call_first_rings(tmp_path):
    r = check(tmp_path, "patient,number,type,window,timezone\n"
                        "MRN1001,(201) 555-0134,post-op,10:00-18:00,America/Chicago\n"
                        "MRN1003,2015550135,results,,\n")
    assert r.returncode == 0, r.stderr
    # Sunday the 22nd is no calling day: Monday, in each patient's own time
    assert "2 call(s), 0 kept out, 0 bad row(s)" in r.stdout
    assert "line 2: MRN1001 post-op 2015550134: first rings 2026-11-23T10:00-06:00" in r.stdout
    assert "line 3: MRN1003 results 2015550135: first rings 2026-11-23T09:00-05:00" in r.stdout


def test_bad_rows_are_named_and_the_exit_status_says_so(tmp_path):
    r = check(tmp_path, "patient,number,type\nMRN1,911,pre-op\nMRN2,2015550136,pre-op\n"
                        "MRN3,2015550137,pre-op\n", dnc="201-555-0137\n",
              at="2026-11-23T12:00")
    assert r.returncode == 1
    assert "line 2: number 911 is outside the allowed dial patterns" in r.stderr
    assert "line 3: MRN2 pre-op 2015550136: may ring now" in r.stdout
    assert "line 4: MRN3 pre-op: kept out, on the do-not-call list" in r.stdout


def test_an_unusable_file_or_moment_stops_with_status_2(tmp_path):
    r = check(tmp_path, "patient,phone\nMRN1,2015550134\n")
    assert r.returncode == 2 and "unknown column(s) phone" in r.stderr
    r = check(tmp_path, "patient,number,type\nMRN1,2015550134,pre-op\n", at="tomorrow")
    assert r.returncode == 2 and "--at 'tomorrow'" in r.stderr


def test_the_demo_campaign_reads_clean_under_the_sandbox_rules():
    r = subprocess.run(
        [sys.executable, "-m", "asterisk_agent", "outbound", "check",
         str(ROOT / "etc" / "campaigns" / "demo.csv"), "--config", str(ROOT / "etc" / "sandbox.conf")],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "4 call(s), 0 kept out, 0 bad row(s)" in r.stdout
    assert r.stdout.count("may ring now") == 4
