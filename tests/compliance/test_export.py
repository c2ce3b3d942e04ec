"""Audit exports: the records of a range with the calls and turns, a manifest that
pins them (SHA-256 of each file, the chain head), optional age encryption, and a
check that finds a changed, missing or extra file or an edited record."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest
from argon2 import PasswordHasher

from asterisk_agent.compliance import export as ex
from asterisk_agent.compliance.audit import AuditLog, chain_hash
from asterisk_agent.compliance.store import open_store, write_key_file
from asterisk_agent.compliance.users import LoginPolicy, Users

ROOT = Path(__file__).resolve().parents[2]
DAY1 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
DAY = 86400.0
SECRET = "my chest hurts since Tuesday"


class Clock:
    def __init__(self):
        self.now = DAY1

    def __call__(self) -> float:
        return self.now


def add_call(store, audit, clock, call_id: str, at: float, patient: str) -> None:
    clock.now = at
    audit.append("call.start", "agent", call_id=call_id)
    with store.transaction() as db:
        db.execute("INSERT INTO calls (id, started, ended, caller) VALUES (?, ?, ?, ?)",
                   (call_id, at, at + 60, "+15550100"))
        db.execute("INSERT INTO turns (call_id, at, speaker, transcript) VALUES (?, ?, ?, ?)",
                   (call_id, at + 5, "caller", f"{SECRET} ({call_id})"))
        db.execute("INSERT INTO turns (call_id, at, speaker, transcript) VALUES (?, ?, ?, ?)",
                   (call_id, at + 9, "agent", "I am putting you through to a nurse."))
    clock.now = at + 30
    audit.append("ehr.message", "agent", call_id=call_id, patient=patient, detail={"kind": "SIU"})
    clock.now = at + 60
    audit.append("call.end", "agent", call_id=call_id)


@pytest.fixture
def site(tmp_path):
    """A store with two calls on 1 January and one on 2 January."""
    key_file = tmp_path / "store.key"
    write_key_file(key_file)
    store = open_store(tmp_path / "store.db", key_file)
    clock = Clock()
    audit = AuditLog(store, clock=clock)
    add_call(store, audit, clock, "c1", DAY1 + 3600, "MRN100")
    add_call(store, audit, clock, "c2", DAY1 + 7200, "MRN200")
    add_call(store, audit, clock, "c3", DAY1 + DAY + 3600, "MRN100")
    clock.now = DAY1 + 3 * DAY
    yield store, audit, tmp_path
    store.close()


def day1() -> ex.Selection:
    return ex.Selection(DAY1, DAY1 + DAY)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- dates -------------------------------------------------------------------------
def test_dates_are_local_days_or_explicit_date_times_and_bad_ones_are_named():
    start = ex.parse_when("2026-01-01")
    assert start == dt.datetime(2026, 1, 1).timestamp()
    assert ex.parse_when("2026-01-01", end=True) - start == DAY  # the whole day
    assert ex.parse_when("2026-01-01T00:00:00Z") == DAY1
    assert ex.parse_when("2026-01-01T01:00+01:00") == DAY1
    for bad in ("2026-13-01", "yesterday", "01/02/2026", ""):
        with pytest.raises(ex.ExportError, match="is not a date: write YYYY-MM-DD"):
            ex.parse_when(bad)
    with pytest.raises(ex.ExportError, match="the range is empty"):
        ex.Selection(DAY1 + DAY, DAY1)


# --- the files and the manifest ----------------------------------------------------------
def test_an_export_holds_the_range_and_a_manifest_that_pins_every_file(site):
    store, audit, tmp = site
    head = audit.head()
    out = tmp / "out"
    result = ex.export(store, audit, day1(), "jsonl", out, "carol")
    assert sorted(p.name for p in out.iterdir()) == [
        "audit.jsonl", "calls.jsonl", "manifest.json", "screen_results.jsonl", "turns.jsonl"]
    records = lines(out / "audit.jsonl")
    assert [r["call_id"] for r in records] == ["c1"] * 3 + ["c2"] * 3  # not c3, the next day
    assert [c["id"] for c in lines(out / "calls.jsonl")] == ["c1", "c2"]
    turns = lines(out / "turns.jsonl")
    assert len(turns) == 4 and turns[0]["transcript"] == f"{SECRET} (c1)"
    assert turns[0]["at"] == "2026-01-01T01:00:05.000000Z"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chain_head"] == {"seq": head[0], "hash": head[1]}
    assert manifest["records"] == {"audit": 6, "calls": 2, "turns": 4, "screen_results": 0}
    assert manifest["exported_by"] == "carol" and manifest["format"] == "jsonl"
    assert manifest["from"] == "2026-01-01T00:00:00.000000Z"
    for entry in manifest["files"]:
        data = (out / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    # the export is itself an audit record, written after the snapshot
    last = audit.records(last=1)[0]
    assert last == result.record and last.event == "export" and last.actor == "carol"
    assert last.seq == head[0] + 1 and manifest["audit_record"]["seq"] == last.seq
    assert last.detail["records"]["audit"] == 6 and last.detail["head"]["seq"] == head[0]
    assert last.detail["files"]["turns.jsonl"] == manifest["files"][2]["sha256"]
    assert SECRET not in json.dumps(last.detail)
    check = ex.verify_export(out)
    assert check.ok and check.plaintext_checked, check.problems
    assert audit.verify() is None


def test_filters_by_call_and_by_patient(site):
    store, audit, tmp = site
    whole = ex.Selection(DAY1, DAY1 + 3 * DAY, patient="MRN100")
    ex.export(store, audit, whole, "jsonl", tmp / "patient", "carol")
    assert [r["patient"] for r in lines(tmp / "patient" / "audit.jsonl")] == ["MRN100"] * 2
    assert [c["id"] for c in lines(tmp / "patient" / "calls.jsonl")] == ["c1", "c3"]
    assert {t["call_id"] for t in lines(tmp / "patient" / "turns.jsonl")} == {"c1", "c3"}
    assert ex.verify_export(tmp / "patient").ok  # records with gaps still check
    one = ex.Selection(DAY1, DAY1 + 3 * DAY, call_id="c2")
    ex.export(store, audit, one, "csv", tmp / "call", "carol")
    assert (tmp / "call" / "calls.csv").read_text().splitlines()[1].startswith("c2,")
    assert ex.verify_export(tmp / "call").ok
    assert audit.records(last=1)[0].call_id == "c2"


def test_csv_keeps_what_the_hashes_need(site):
    store, audit, tmp = site
    ex.export(store, audit, day1(), "csv", tmp / "out", "carol")
    header = (tmp / "out" / "audit.csv").read_text().splitlines()[0]
    assert header == "seq,at,event,actor,call_id,patient,detail,prev,hash"
    check = ex.verify_export(tmp / "out")
    assert check.ok and check.manifest["records"]["audit"] == 6, check.problems


def test_an_export_never_goes_into_a_non_empty_directory(site):
    store, audit, tmp = site
    out = tmp / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    head = audit.head()
    with pytest.raises(ex.ExportError, match="is not empty"):
        ex.export(store, audit, day1(), "jsonl", out, "carol")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert audit.head() == head  # nothing exported, nothing recorded
    with pytest.raises(ex.ExportError, match="format 'xml'"):
        ex.export(store, audit, day1(), "xml", tmp / "other", "carol")


# --- the check -----------------------------------------------------------------
def test_the_check_finds_a_changed_missing_or_extra_file_and_an_unfinished_export(site):
    store, audit, tmp = site
    out = tmp / "out"
    ex.export(store, audit, day1(), "jsonl", out, "carol")
    calls = (out / "calls.jsonl").read_bytes()
    (out / "calls.jsonl").write_bytes(calls.replace(b"c1", b"c9"))
    (out / "stray.txt").write_text("x")
    check = ex.verify_export(out)
    assert not check.ok
    assert any("calls.jsonl: its SHA-256 is not the manifest's" in p for p in check.problems)
    assert any("files not in the manifest: stray.txt" in p for p in check.problems)
    (out / "manifest.json").unlink()
    check = ex.verify_export(out)
    assert not check.ok and "the export did not finish" in check.problems[0]


def test_the_check_finds_an_edited_record_even_with_the_manifest_rewritten(site):
    store, audit, tmp = site
    out = tmp / "out"
    ex.export(store, audit, day1(), "jsonl", out, "carol")
    records = lines(out / "audit.jsonl")
    records[1]["actor"] = "mallory"
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    (out / "audit.jsonl").write_bytes(data)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"][0].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (out / "manifest.json").write_text(json.dumps(manifest))
    check = ex.verify_export(out)
    assert check.problems == [f"audit record {records[1]['seq']}: its content does not match "
                              "its hash (edited)"]
    # re-hashing the record too breaks the link to the next one
    records[1]["hash"] = chain_hash(records[1]["prev"], {
        k: records[1][k] for k in ("seq", "at", "event", "actor", "call_id", "patient", "detail")})
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    (out / "audit.jsonl").write_bytes(data)
    manifest["files"][0].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (out / "manifest.json").write_text(json.dumps(manifest))
    check = ex.verify_export(out)
    assert check.problems == [f"audit record {records[2]['seq']} does not chain to record "
                              f"{records[1]['seq']}"]


# --- encryption -----------------------------------------------------------------
def test_an_encrypted_export_holds_no_plaintext_and_decrypts_with_the_identity(site):
    store, audit, tmp = site
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    out = tmp / "out"
    sel = ex.Selection(DAY1, DAY1 + DAY, patient="MRN100")
    ex.export(store, audit, sel, "jsonl", out, "carol", recipient=recipient)
    assert sorted(p.name for p in out.iterdir()) == [
        "audit.jsonl.age", "calls.jsonl.age", "manifest.json", "screen_results.jsonl.age",
        "turns.jsonl.age"]
    for p in out.iterdir():
        data = p.read_bytes()
        assert SECRET.encode() not in data and b"MRN100" not in data and b'"c1"' not in data, p
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encrypted"] and "withheld" in manifest["filters"]["patient"]
    turns = manifest["files"][2]
    plain = pyrage.decrypt((out / "turns.jsonl.age").read_bytes(), [identity])
    assert hashlib.sha256(plain).hexdigest() == turns["sha256"]
    assert turns["encrypted"]["sha256"] == hashlib.sha256(
        (out / "turns.jsonl.age").read_bytes()).hexdigest()
    assert SECRET in plain.decode()
    check = ex.verify_export(out)
    assert check.ok and not check.plaintext_checked
    check = ex.verify_export(out, [identity])
    assert check.ok and check.plaintext_checked, check.problems
    stranger = pyrage.x25519.Identity.generate()
    check = ex.verify_export(out, [stranger])
    assert not check.ok and "cannot be decrypted" in check.problems[0]


def test_a_bad_recipient_is_refused_before_anything_is_written(site):
    store, audit, tmp = site
    with pytest.raises(ex.ExportError, match="not an age public key"):
        ex.export(store, audit, day1(), "jsonl", tmp / "out", "carol", recipient="age1nope")
    assert not (tmp / "out").exists()


# --- the command line -------------------------------------------------------------
def run(conf: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asterisk_agent", "-c", str(conf), *args],
                          cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60)


def cli_site(tmp_path) -> tuple[Path, Path]:
    """A config, a store with three users and one call, and carol's credentials file."""
    key, creds, conf = tmp_path / "store.key", tmp_path / "creds", tmp_path / "agent.conf"
    conf.write_text(f"[general]\nstate_dir = {tmp_path / 'state'}\n\n[compliance]\n"
                    f"key_file = {key}\ncredentials_file = {creds}\n")
    write_key_file(key)
    with open_store(tmp_path / "state" / "store.db", key) as store:
        audit = AuditLog(store)
        users = Users(store, audit, LoginPolicy(), hasher=PasswordHasher(
            time_cost=1, memory_cost=8192, parallelism=1))
        users.add("admin", "admin", "admin password 1", "os:test")
        users.add("carol", "compliance", "carol password 2", "admin")
        users.add("dave", "auditor", "dave password 33", "admin")
        clock = Clock()
        add_call(store, AuditLog(store, clock=clock), clock, "c1", DAY1 + 3600, "MRN100")
    creds.write_text("carol:carol password 2\n")
    creds.chmod(0o600)
    return conf, creds


def test_audit_export_and_verify_export_from_the_command_line(tmp_path):
    conf, creds = cli_site(tmp_path)
    out = tmp_path / "export"
    args = ("audit", "export", "--from", "2025-12-31", "--to", "2026-01-02", "--out", str(out))
    done = run(conf, *args, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert "exported 3 audit" in done.stdout and "not encrypted" in done.stdout
    done = run(conf, "audit", "verify-export", str(out))
    assert done.returncode == 0 and "export intact" in done.stdout, done.stdout + done.stderr
    (out / "turns.csv").write_text("tampered\n")
    done = run(conf, "audit", "verify-export", str(out))
    assert done.returncode == 1 and "BAD  turns.csv" in done.stdout
    done = run(conf, *args)
    assert done.returncode == 2 and "is not empty" in done.stderr
    done = run(conf, "audit", "export", "--from", "2026-02-30", "--to", "2026-03-01",
               "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "'2026-02-30' is not a date" in done.stderr
    creds.write_text("dave:dave password 33\n")
    done = run(conf, *args[:-1], str(tmp_path / "by-auditor"))
    assert done.returncode == 2 and "needs the role compliance" in done.stderr
    assert not (tmp_path / "by-auditor").exists()


def test_concurrent_exports_into_one_directory_leave_one_whole_export(tmp_path):
    conf, _ = cli_site(tmp_path)
    out = tmp_path / "export"
    args = [sys.executable, "-m", "asterisk_agent", "-c", str(conf), "audit", "export",
            "--from", "2025-12-31", "--to", "2026-01-02"]
    runs = [subprocess.Popen(args + ["--out", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    # and one into a directory of its own, at the same time
    runs.append(subprocess.Popen(args + ["--out", str(tmp_path / "own")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(120), p.communicate()) for p in runs]
    same = results[:3]
    assert sorted(rc for rc, _ in same) == [0, 2, 2], results
    for rc, (_, err) in same:
        if rc:
            assert "appeared while exporting" in err or "is not empty" in err, err
    assert results[3][0] == 0, results[3]
    for d in (out, tmp_path / "own"):
        done = run(conf, "audit", "verify-export", str(d))
        assert done.returncode == 0 and "export intact" in done.stdout, done.stdout + done.stderr
