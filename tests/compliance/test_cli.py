"""`asterisk-agent keys | users | audit`, run as a compliance officer would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from asterisk_agent.compliance.store import read_key_file

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PW, AUDITOR_PW = "admin password 1", "auditor password 2"


class Site:
    def __init__(self, tmp: Path):
        self.tmp, self.key, self.creds = tmp, tmp / "etc" / "store.key", tmp / "etc" / "auditor"
        self.store = tmp / "state" / "store.db"
        (tmp / "etc").mkdir()
        base = f"[general]\nstate_dir = {tmp / 'state'}\n\n[compliance]\nkey_file = {self.key}\n"
        self.conf = tmp / "etc" / "agent.conf"
        self.conf.write_text(base)
        self.auto = tmp / "etc" / "auto.conf"
        self.auto.write_text(base + f"credentials_file = {self.creds}\n")

    def run(self, *args: str, stdin: str = "", auto: bool = False) -> subprocess.CompletedProcess:
        conf = self.auto if auto else self.conf
        return subprocess.run([sys.executable, "-m", "asterisk_agent", "-c", str(conf), *args],
                              cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60)

    def setup(self) -> None:
        """A key, an admin, and an auditor whose credentials file automation uses."""
        assert self.run("keys", "init").returncode == 0
        out = self.run("users", "add", "admin", "--role", "admin", stdin=f"{ADMIN_PW}\n" * 2)
        assert out.returncode == 0, out.stderr
        out = self.run("users", "add", "aud", "--role", "auditor", "--user", "admin",
                       stdin=f"{ADMIN_PW}\n" + f"{AUDITOR_PW}\n" * 2)
        assert out.returncode == 0, out.stderr
        self.creds.write_text(f"aud:{AUDITOR_PW}\n")
        self.creds.chmod(0o600)

    def show(self) -> str:
        out = self.run("audit", "show", auto=True)
        assert out.returncode == 0, out.stderr
        return out.stdout


@pytest.fixture
def site(tmp_path) -> Site:
    return Site(tmp_path)


def test_keys_init_makes_a_private_key_never_replaces_it_and_a_wrong_key_is_refused(site):
    out = site.run("keys", "init")
    assert out.returncode == 0 and "0600" in out.stdout, out.stderr
    key = read_key_file(site.key)
    assert site.key.stat().st_mode & 0o777 == 0o600
    out = site.run("keys", "init")
    assert out.returncode == 2 and "exists already" in out.stderr
    assert read_key_file(site.key) == key
    out = site.run("users", "add", "admin", "--role", "admin", stdin=f"{ADMIN_PW}\n" * 2)
    assert out.returncode == 0, out.stderr
    site.key.unlink()
    site.run("keys", "init")
    before = site.store.read_bytes()
    out = site.run("users", "list", "--user", "admin", stdin=f"{ADMIN_PW}\n")
    assert out.returncode == 2 and "wrong key" in out.stderr and str(site.store) in out.stderr
    assert site.store.read_bytes() == before


def test_users_roles_and_key_rotation_from_the_command_line(site):
    site.setup()
    out = site.run("users", "list", "--user", "admin", stdin=f"{ADMIN_PW}\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["admin", "admin", "aud", "auditor"]
    assert "argon2" not in out.stdout and ADMIN_PW not in out.stdout + out.stderr
    out = site.run("users", "list", auto=True)  # the auditor manages no one
    assert out.returncode == 2 and "aud (role auditor) may not users.manage" in out.stderr
    out = site.run("users", "add", "eve", "--role", "admin", "--user", "admin",
                   stdin="not the password\n")
    assert out.returncode == 2 and "wrong user name or password" in out.stderr
    out = site.run("users", "passwd", "aud", "--user", "aud",
                   stdin=f"{AUDITOR_PW}\nnew auditor password\nnew auditor password\n")
    assert out.returncode == 0, out.stderr  # one's own password needs no admin
    site.creds.write_text("aud:new auditor password\n")

    old = read_key_file(site.key)
    out = site.run("keys", "rotate")
    assert out.returncode == 0 and "re-keyed" in out.stdout, out.stderr
    assert read_key_file(site.key) != old
    out = site.run("audit", "verify", auto=True)
    assert out.returncode == 0 and "intact" in out.stdout, out.stdout + out.stderr

    shown = site.show()
    for event, actor in (("user.add", "os:"), ("login", "admin"), ("user.add", "admin"),
                         ("access.denied", "aud"), ("login.failed", "admin"),
                         ("user.passwd", "aud"), ("keys.rotate", "os:"),
                         ("audit.verify", "aud")):
        assert any(event in line.split() and actor in line for line in shown.splitlines()), \
            (event, actor, shown)


def test_the_first_user_must_be_an_admin_and_others_need_a_login(site):
    site.run("keys", "init")
    out = site.run("users", "add", "aud", "--role", "auditor", stdin=f"{AUDITOR_PW}\n" * 2)
    assert out.returncode == 2 and "first user must be an admin" in out.stderr
    out = site.run("users", "add", "admin", "--role", "admin", stdin=f"{ADMIN_PW}\nother one!!!\n")
    assert out.returncode == 2 and "differ" in out.stderr
    out = site.run("audit", "verify")
    assert out.returncode == 2 and "--user NAME" in out.stderr


def test_audit_verify_and_show_are_audited_and_find_tampering(site):
    site.setup()
    out = site.run("audit", "verify", auto=True)
    assert out.returncode == 0 and "audit chain intact" in out.stdout, out.stderr
    out = site.run("audit", "show", "--last", "2", auto=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # the verify, then this show's own login
    assert len(lines) == 2 and " audit.verify " in lines[0] and '"intact": true' in lines[0]
    assert " login " in lines[1] and '"command": "audit show"' in lines[1]

    db = sqlcipher.connect(str(site.store), isolation_level=None)
    db.execute(f"PRAGMA key = \"x'{read_key_file(site.key).hex()}'\"")
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET actor = 'someone else' WHERE seq = 2")
    db.close()
    out = site.run("audit", "verify", auto=True)
    assert out.returncode == 1 and "BROKEN at record 2: edited" in out.stdout, out.stdout
    out = site.run("audit", "show", "--last", "5", "--json", auto=True)
    assert '"event": "audit.verify"' in out.stdout and '"first_bad": 2' in out.stdout
    assert '"event": "audit.show"' in out.stdout


def test_the_outbox_in_full_needs_a_compliance_login_and_each_look_is_audited(site):
    import datetime as dt

    from asterisk_agent.compliance.store import open_store
    from asterisk_agent.ehr import messages as m
    from asterisk_agent.ehr.outbox import Outbox

    site.setup()
    out = site.run("users", "add", "comp", "--role", "compliance", "--user", "admin",
                   stdin=f"{ADMIN_PW}\n" + "compliance pass 3\n" * 2)
    assert out.returncode == 0, out.stderr
    patient = m.Patient("MRN1001", "Rivera", "Ana", dt.date(1984, 3, 12), "555-0101")
    with open_store(site.store, site.key, create=False) as store:
        box = Outbox(store=store)
        note = box.put(m.chart_note(m.header(m.Facility()), patient, "Caller message",
                                    "my knee hurts"), patient.id)
        box.close()

    out = site.run("ehr", "outbox")  # the list without PHI needs no login
    assert out.returncode == 0 and note.control_id in out.stdout and "Rivera" not in out.stdout
    out = site.run("ehr", "outbox", "--phi")
    assert out.returncode == 2 and "--user NAME" in out.stderr
    out = site.run("ehr", "outbox", "--phi", auto=True)  # the auditor
    assert out.returncode == 2 and "may not outbox.read" in out.stderr
    assert "Rivera" not in out.stdout + out.stderr
    out = site.run("ehr", "outbox", "--phi", "--user", "comp", stdin="compliance pass 3\n")
    assert out.returncode == 0, out.stderr
    assert "RIVERA^ANA" in out.stdout.upper() and "my knee hurts" in out.stdout
    assert f"--- {note.control_id} MDM^T02 pending" in out.stdout

    shown = site.show().splitlines()
    assert any("access.denied" in line and "outbox.read" in line for line in shown), shown
    read = [line for line in shown if "ehr.outbox.read" in line.split()]
    assert len(read) == 1 and "comp" in read[0] and "patient=MRN1001" in read[0], shown
    assert note.control_id in read[0]
