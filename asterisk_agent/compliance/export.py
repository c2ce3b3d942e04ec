"""Audit exports: the audit records of a time range, with the calls, turns and
screen results the store holds for it, written as JSON lines or CSV files plus a
manifest that pins them.

The manifest (manifest.json) names each file with its SHA-256, size and record
count, the range and filters, who exported and when, the audit chain's head at
the moment of the export, and the export's own audit record.  That record (event
`export`) carries every file's SHA-256 in turn, so the copy and the store vouch
for each other.  The manifest is written last, under a temporary name renamed
into place: a directory without one is an export that did not finish.

With a recipient (an age X25519 public key, `age1...`) every file is encrypted
to it with pyrage (the age format, no plaintext ever on disk) and the manifest
lists the SHA-256 of both the plaintext and the ciphertext.  The patient filter
is then withheld from the manifest, which stays readable.

verify_export() needs no store: it recomputes the hashes, the counts, each audit
record's own hash and the links between consecutive records, so an export can be
checked wherever it was copied to.  Like the store, everything here blocks.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asterisk_agent.compliance.audit import AuditLog, Record, canonical, chain_hash, timestamp
from asterisk_agent.compliance.store import Store, fsync_dir, write_new_private

FORMATS = ("jsonl", "csv")
MANIFEST = "manifest.json"
VERSION = 1

# what is exported besides the audit trail: (table, columns); columns holding
# seconds since the epoch are written as ISO 8601 UTC like the audit records
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("calls", ("id", "started", "ended", "caller", "language", "outcome")),
    ("turns", ("id", "call_id", "at", "speaker", "transcript")),
    ("screen_results", ("id", "call_id", "at", "specialty", "urgent", "result")),
)
_TIMES = frozenset({"started", "ended", "at"})
AUDIT_COLUMNS = ("seq", "at", "event", "actor", "call_id", "patient", "detail", "prev", "hash")


class ExportError(Exception):
    """An export that cannot be made or checked; the message says why."""


# --- dates --------------------------------------------------------------------------
def parse_when(text: str, end: bool = False) -> float:
    """Seconds since the epoch for a command-line date or date-time.

    A bare date (2024-05-31) is local midnight; as the end of a range (end=True)
    it means the whole day, so `--from 2024-05-01 --to 2024-05-07` is a week.  A
    date-time without an offset is local time; `Z` or `+02:00` say otherwise.
    """
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            when = dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time())
        else:
            when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ExportError(f"{text!r} is not a date: write YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS] "
                          "with an optional Z or +HH:MM") from None
    return when.timestamp()  # a naive value is taken as local time


@dataclass(frozen=True)
class Selection:
    """What an export holds: records from `since` (inclusive) to `until`
    (exclusive), seconds since the epoch, optionally of one call or one patient."""

    since: float
    until: float
    call_id: str | None = None
    patient: str | None = None

    def __post_init__(self) -> None:
        if self.since >= self.until:
            raise ExportError(f"the range is empty: it ends ({timestamp(self.until)}) before "
                              f"it starts ({timestamp(self.since)})")

    def filters(self, withhold_patient: bool) -> dict[str, Any]:
        patient = self.patient
        if patient is not None and withhold_patient:
            patient = "(withheld: the export is encrypted)"
        return {"call": self.call_id, "patient": patient}


# --- reading the store ------------------------------------------------------------
def _call_ids(sel: Selection) -> tuple[str, list[Any]]:
    """A subquery for the IDs of the calls an export covers, and its parameters.

    Without a filter: the calls started in the range.  With --patient: the calls
    of the patient's audit records in the range (calls carry no patient ID).
    """
    since, until = timestamp(sel.since), timestamp(sel.until)
    if sel.patient is not None:
        sql = ("SELECT DISTINCT call_id FROM audit WHERE patient = ? AND at >= ? AND at < ? "
               "AND call_id IS NOT NULL")
        params: list[Any] = [sel.patient, since, until]
        if sel.call_id is not None:
            sql += " AND call_id = ?"
            params.append(sel.call_id)
        return sql, params
    sql, params = "SELECT id FROM calls WHERE started >= ? AND started < ?", [sel.since, sel.until]
    if sel.call_id is not None:
        sql += " AND id = ?"
        params.append(sel.call_id)
    return sql, params


def _table_rows(db, table: str, columns: tuple[str, ...], sel: Selection) -> Iterator[dict]:
    ids, params = _call_ids(sel)
    key = "id" if table == "calls" else "call_id"
    cursor = db.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {key} IN ({ids}) "
                        f"ORDER BY {key}, id", params)
    for row in cursor:
        yield {c: (timestamp(v) if c in _TIMES and v is not None else v)
               for c, v in zip(columns, row)}


# --- writing the files --------------------------------------------------------------
def _jsonl(rows: Iterable[dict]) -> tuple[bytes, int]:
    buf, n = io.StringIO(), 0
    for row in rows:
        buf.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        n += 1
    return buf.getvalue().encode("utf-8"), n


def _csv(columns: tuple[str, ...], rows: Iterable[dict]) -> tuple[bytes, int]:
    """CSV with a header; NULL is an empty field, the audit detail canonical JSON."""
    buf, n = io.StringIO(), 0
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(columns)
    for row in rows:
        out.writerow(["" if row[c] is None else row[c] for c in columns])
        n += 1
    return buf.getvalue().encode("utf-8"), n


def _audit_row(r: Record, fmt: str) -> dict:
    row = r.to_json()
    if fmt == "csv":
        row["detail"] = canonical(r.detail).decode("utf-8")  # "null" when there is none
    return row


def _write_new(path: Path, data: bytes) -> None:
    try:
        write_new_private(path, data)
    except FileExistsError:
        raise ExportError(f"{path} appeared while exporting: is another export writing "
                          "into the same directory?") from None


def _prepare_dir(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ExportError(f"{out} is not a directory")
        if any(out.iterdir()):
            raise ExportError(f"{out} is not empty: an export goes into a new or empty "
                              "directory, so that nothing in it is mistaken for part of it")
    else:
        try:
            out.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise ExportError(f"cannot make {out}: {exc.strerror}") from None


def _recipient(text: str):
    try:
        import pyrage
    except ImportError:
        raise ExportError("encrypting an export needs pyrage: pip install pyrage") from None
    try:
        return pyrage.x25519.Recipient.from_str(text.strip())
    except pyrage.RecipientError as exc:
        raise ExportError(f"recipient {text!r} is not an age public key (age1...): {exc}") \
            from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ExportResult:
    out: Path
    counts: dict[str, int]
    head: tuple[int, str]
    record: Record              # the export's own audit record
    manifest: dict[str, Any] = field(repr=False)


def export(store: Store, audit: AuditLog, sel: Selection, fmt: str, out: Path | str,
           actor: str, recipient: str | None = None,
           clock: Callable[[], float] = time.time) -> ExportResult:
    """Write the export of `sel` into `out` (new or empty) and audit it."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    age = _recipient(recipient) if recipient else None
    _prepare_dir(out)
    # one read snapshot: the head is the chain as it stood for exactly these rows
    # (the store is in WAL mode, so the agent keeps writing meanwhile)
    files: list[tuple[str, bytes, int]] = []
    with store.lock:
        db = store.db
        db.execute("BEGIN")
        try:
            head = tuple(db.execute("SELECT seq, hash FROM audit_head").fetchone())
            records = (_audit_row(r, fmt) for r in audit.iter_records(
                sel.since, sel.until, sel.call_id, sel.patient))
            files.append(("audit",) + (_jsonl(records) if fmt == "jsonl"
                                       else _csv(AUDIT_COLUMNS, records)))
            for table, columns in TABLES:
                rows = _table_rows(db, table, columns, sel)
                files.append((table,) + (_jsonl(rows) if fmt == "jsonl" else _csv(columns, rows)))
        finally:
            db.execute("COMMIT")
    entries = []
    for table, data, count in files:
        name = f"{table}.{fmt}"
        entry = {"name": name, "table": table, "records": count, "bytes": len(data),
                 "sha256": _sha256(data)}
        if age is not None:
            import pyrage

            data = pyrage.encrypt(data, [age])
            entry["encrypted"] = {"name": name + ".age", "bytes": len(data),
                                  "sha256": _sha256(data), "recipient": recipient.strip()}
        _write_new(out / (name + ".age" if age is not None else name), data)
        entries.append(entry)
    counts = {e["table"]: e["records"] for e in entries}
    range_ = {"from": timestamp(sel.since), "to": timestamp(sel.until)}
    # audited before the manifest exists: an export the trail does not know of
    # is never presented as complete
    record = audit.append("export", actor, call_id=sel.call_id, patient=sel.patient, detail={
        **range_, "format": fmt, "encrypted": age is not None, "out": str(out),
        "records": counts, "head": {"seq": head[0], "hash": head[1]},
        "files": {e["name"]: e["sha256"] for e in entries}})
    manifest = {
        "asterisk_agent_export": VERSION,
        "exported_at": timestamp(clock()), "exported_by": actor,
        **range_, "filters": sel.filters(withhold_patient=age is not None),
        "format": fmt, "encrypted": age is not None,
        "chain_head": {"seq": head[0], "hash": head[1]},
        "audit_record": {"seq": record.seq, "hash": record.hash},
        "records": counts, "files": entries,
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    partial = out / (MANIFEST + ".partial")
    _write_new(partial, text)
    os.replace(partial, out / MANIFEST)
    fsync_dir(out)
    return ExportResult(out, counts, head, record, manifest)


# --- checking an export --------------------------------------------------------------
@dataclass
class Verification:
    manifest: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    plaintext_checked: bool = False   # False for an encrypted export checked without its key

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not self.problems


def read_identities(path: Path | str) -> list:
    """The age identities (AGE-SECRET-KEY-1...) in an identity file, e.g. from age-keygen."""
    import pyrage
    from asterisk_agent.compliance.store import StoreError, read_private

    try:
        text = read_private(Path(path), "identity file")
    except StoreError as exc:
        raise ExportError(str(exc)) from None
    keys = [line.strip() for line in text.splitlines() if line.strip().startswith("AGE-SECRET-KEY-")]
    if not keys:
        raise ExportError(f"identity file {path} holds no AGE-SECRET-KEY- line")
    try:
        return [pyrage.x25519.Identity.from_str(k) for k in keys]
    except pyrage.IdentityError as exc:
        raise ExportError(f"identity file {path}: {exc}") from None


def _parse_audit(data: bytes, fmt: str) -> list[Record]:
    text = data.decode("utf-8")
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line]
    else:
        rows = []
        for row in list(csv.DictReader(io.StringIO(text))):
            row = {k: (v if v != "" else None) for k, v in row.items()}
            row["seq"], row["detail"] = int(row["seq"]), json.loads(row["detail"])
            rows.append(row)
    return [Record(**{c: row[c] for c in AUDIT_COLUMNS}) for row in rows]


def _count(data: bytes, fmt: str) -> int:
    text = data.decode("utf-8")
    if fmt == "jsonl":
        return sum(1 for line in text.splitlines() if line)
    return max(0, sum(1 for _ in csv.reader(io.StringIO(text))) - 1)


def _check_chain(records: list[Record], head: dict, problems: list[str]) -> None:
    """Each record's own hash, the links between consecutive ones, and the head.

    An export with a filter holds records with gaps between them: each is still
    checked against its own hash, and pinned through the chain head.
    """
    before: Record | None = None
    for r in records:
        if chain_hash(r.prev, r.content()) != r.hash:
            problems.append(f"audit record {r.seq}: its content does not match its hash (edited)")
        if before is not None and r.seq <= before.seq:
            problems.append(f"audit record {r.seq} comes after record {before.seq} (reordered)")
        elif before is not None and r.seq == before.seq + 1 and r.prev != before.hash:
            problems.append(f"audit record {r.seq} does not chain to record {before.seq}")
        if r.seq > head["seq"]:
            problems.append(f"audit record {r.seq} is beyond the chain head ({head['seq']})")
        elif r.seq == head["seq"] and r.hash != head["hash"]:
            problems.append(f"audit record {r.seq} is not the chain head the manifest names")
        before = r


def verify_export(out: Path | str, identities: list | None = None) -> Verification:
    """Check an export directory against its manifest (see the module docstring)."""
    out, result = Path(out), Verification()
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        fmt, head, entries = manifest["format"], manifest["chain_head"], manifest["files"]
        if fmt not in FORMATS or not isinstance(entries, list):
            raise ValueError("unknown format")
    except FileNotFoundError:
        result.problems.append(f"no {MANIFEST} in {out}: the export did not finish")
        return result
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.problems.append(f"{MANIFEST} cannot be read: {exc}")
        return result
    result.manifest = manifest
    listed = {MANIFEST}
    result.plaintext_checked = not manifest.get("encrypted") or bool(identities)
    for entry in entries:
        stored = entry.get("encrypted") or entry
        listed.add(stored["name"])
        path = out / stored["name"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            result.problems.append(f"{stored['name']}: cannot be read ({exc.strerror})")
            continue
        if len(data) != stored["bytes"] or _sha256(data) != stored["sha256"]:
            result.problems.append(f"{stored['name']}: its SHA-256 is not the manifest's "
                                   "(changed or truncated)")
            continue
        if "encrypted" in entry:
            if not identities:
                continue
            import pyrage

            try:
                data = pyrage.decrypt(data, identities)
            except pyrage.DecryptError as exc:
                result.problems.append(f"{stored['name']}: cannot be decrypted ({exc})")
                continue
            if _sha256(data) != entry["sha256"]:
                result.problems.append(f"{entry['name']}: decrypted, its SHA-256 is not the "
                                       "manifest's")
                continue
        try:
            if _count(data, fmt) != entry["records"]:
                result.problems.append(f"{entry['name']}: holds {_count(data, fmt)} records, "
                                       f"the manifest says {entry['records']}")
            if entry["table"] == "audit":
                _check_chain(_parse_audit(data, fmt), head, result.problems)
        except (ValueError, KeyError, TypeError) as exc:
            result.problems.append(f"{entry['name']}: cannot be read ({exc})")
    extra = sorted(p.name for p in out.iterdir() if p.name not in listed)
    if extra:
        result.problems.append(f"files not in the manifest: {', '.join(extra)}")
    return result


__all__ = ["export", "verify_export", "read_identities", "parse_when", "Selection",
           "ExportResult", "Verification", "ExportError", "FORMATS", "MANIFEST", "TABLES"]
