"""Recordings: a finished MixMonitor WAV moves into the encrypted store and its
plaintext file goes; an interrupted import is finished, never duplicated; the
compliance role gets it back out, audited."""

from __future__ import annotations

import os
import shutil
import time
import wave

import pytest

from asterisk_agent.compliance import recordings as rec
from asterisk_agent.compliance.audit import AuditLog
from asterisk_agent.compliance.users import AuthError, User

from .conftest import make_wav

CAROL = User("carol", "compliance", 0.0, 0.0)
DAVE = User("dave", "auditor", 0.0, 0.0)


def test_import_stores_the_bytes_encrypted_and_removes_the_plaintext(store, tmp_path):
    wav = make_wav(tmp_path / "1767225600.42.wav")
    data, mtime = wav.read_bytes(), wav.stat().st_mtime
    done = rec.import_recording(store, "1767225600.42", wav)
    assert not wav.exists()
    assert (done.bytes, done.seconds, done.already) == (len(data), 2.0, False)
    assert store.query("SELECT call_id, format, audio, created FROM recordings") == [
        ("1767225600.42", "wav", data, mtime)]
    # the call's row is made from the recording when the agent has not stored it
    assert store.query("SELECT started, ended FROM calls") == [(mtime - 2.0, mtime)]
    record = AuditLog(store).records(last=1)[0]
    assert record.event == "recording.import" and record.call_id == "1767225600.42"
    assert record.detail == {"recording": done.recording_id, "bytes": len(data),
                             "sha256": done.sha256, "seconds": 2.0}
    # nothing of the audio is readable in the store file
    assert data[1000:1100] not in (tmp_path / "store.db").read_bytes()


def test_an_import_interrupted_before_the_removal_is_finished_not_duplicated(store, tmp_path):
    wav = make_wav(tmp_path / "c1.wav")
    kept = shutil.copy2(wav, tmp_path / "kept")
    first = rec.import_recording(store, "c1", wav)
    # the state a crash between the commit and the unlink leaves: stored, file still there
    shutil.copy2(kept, wav)
    again = rec.import_recording(store, "c1", wav)
    assert again.already and again.recording_id == first.recording_id
    assert not wav.exists()
    assert store.query("SELECT count(*) FROM recordings")[0][0] == 1
    assert [r.event for r in AuditLog(store).records()] == ["recording.import"]
    # a second, different recording of the same call is its own row
    rec.import_recording(store, "c1", make_wav(tmp_path / "c1.wav", hz=880.0))
    assert store.query("SELECT count(*) FROM recordings WHERE call_id = 'c1'")[0][0] == 2


def test_a_file_that_is_not_a_wav_stays_in_place_and_nothing_is_stored(store, tmp_path):
    bad = tmp_path / "c2.wav"
    bad.write_bytes(b"RIFF\x00\x00 not really a wave file")
    with pytest.raises(rec.RecordingError, match="not a readable WAV file .* left in place"):
        rec.import_recording(store, "c2", bad)
    empty = tmp_path / "c3.wav"
    empty.write_bytes(b"")
    with pytest.raises(rec.RecordingError, match="left in place"):
        rec.import_recording(store, "c3", empty)
    with pytest.raises(rec.RecordingError, match="not a recording"):
        rec.import_recording(store, "c4", tmp_path / "c4.mp3")
    assert bad.exists() and empty.exists()
    assert store.query("SELECT count(*) FROM recordings")[0][0] == 0
    assert AuditLog(store).head()[0] == 0


def test_sweep_imports_finished_recordings_and_leaves_live_and_fresh_ones(store, tmp_path):
    spool = tmp_path / "monitor"
    spool.mkdir()
    make_wav(spool / "done-1.wav")
    make_wav(spool / "done-2.WAV")
    make_wav(spool / "live.wav")
    fresh = make_wav(spool / "fresh.wav")
    os.utime(fresh)  # being written right now
    (spool / "broken.wav").write_bytes(b"garbage")
    os.utime(spool / "broken.wav", (time.time() - 60, time.time() - 60))
    (spool / "notes.txt").write_text("not a recording")
    result = rec.sweep(store, spool, live={"live"})
    assert sorted(i.call_id for i in result.imported) == ["done-1", "done-2"]
    assert sorted(p.name for p, _ in result.skipped) == ["fresh.wav", "live.wav"]
    assert [p.name for p, _ in result.failed] == ["broken.wav"]
    assert sorted(p.name for p in spool.iterdir()) == [
        "broken.wav", "fresh.wav", "live.wav", "notes.txt"]
    # the next sweep, once the call has ended, picks up the rest
    os.utime(fresh, (time.time() - 60, time.time() - 60))
    result = rec.sweep(store, spool)
    assert sorted(i.call_id for i in result.imported) == ["fresh", "live"]
    assert store.query("SELECT count(*) FROM recordings")[0][0] == 4


def test_export_is_for_the_compliance_role_and_audited(store, tmp_path):
    wav = make_wav(tmp_path / "c1.wav")
    data = wav.read_bytes()
    rec.import_recording(store, "c1", wav)
    audit = AuditLog(store)
    with pytest.raises(AuthError, match="needs the role compliance"):
        rec.export_recording(store, "c1", tmp_path / "out.wav", DAVE)
    assert not (tmp_path / "out.wav").exists()
    assert audit.records(last=1)[0].event == "access.denied"
    paths = rec.export_recording(store, "c1", tmp_path / "out.wav", CAROL)
    assert paths == [tmp_path / "out.wav"] and paths[0].read_bytes() == data
    assert paths[0].stat().st_mode & 0o777 == 0o600
    with wave.open(str(paths[0])) as w:
        assert w.getnframes() == 16000
    record = audit.records(last=1)[0]
    assert record.event == "recording.export" and record.actor == "carol"
    assert record.call_id == "c1" and record.detail["out"] == [str(paths[0])]
    with pytest.raises(rec.RecordingError, match="exists already"):
        rec.export_recording(store, "c1", tmp_path / "out.wav", CAROL)
    with pytest.raises(rec.RecordingError, match="no recording of call c9"):
        rec.export_recording(store, "c9", tmp_path / "c9.wav", CAROL)
    assert audit.verify() is None
