"""`asterisk-agent keys | users | audit`: the store's key, its users, its audit trail.

keys init                 make the key file ([compliance] key_file), 0600, never over one
keys rotate               re-key the store (stop the agent first); survives a crash
users add NAME --role R   the first user, an admin, needs no login: whoever can read
                          the key file owns the store anyway
users remove NAME | passwd NAME | list
audit show [--call ID] [--last N] [--json]
audit verify              exit 0 when the chain is whole, 1 with the first bad record
audit export --from DATE --to DATE [--call ID] [--patient MRN] [--format jsonl|csv]
             --out DIR [--recipient AGE_PUBKEY]
                          the records of a range, with a manifest of SHA-256 sums
audit verify-export DIR [--identity FILE]
                          check an export against its manifest (no login, no store)
retention purge [--dry-run]
                          remove transcripts and recordings older than retention_days

Every users and audit command logs in: --user NAME asks for the password, or
[compliance] credentials_file (NAME:PASSWORD, mode 0600) is used for automation.
Each command is itself an audit record.  Exit 2: refused (login, role, store).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import pwd
import sys
import warnings

from asterisk_agent import config
from asterisk_agent.compliance import export as export_mod
from asterisk_agent.compliance import retention
from asterisk_agent.compliance.audit import AuditLog, Record
from asterisk_agent.compliance.store import (Store, StoreError, open_store, read_key_file,
                                             rotate_key, write_key_file)
from asterisk_agent.compliance.users import (ROLES, AuthError, LoginPolicy, User, Users,
                                             read_credentials, require)

EX_REFUSED = 2


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("init", "rotate"))
    parser.add_argument("--if-missing", action="store_true",
                        help="init: leave a key file that exists as it is (exit 0)")


def add_users_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("add", "remove", "passwd", "list"))
    parser.add_argument("name", nargs="?", help="the user to add, remove or give a new password")
    parser.add_argument("--role", choices=ROLES, help="add: the new user's role")
    parser.add_argument("--user", help="log in as this user (asks for the password)")


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("show", "verify", "export", "verify-export"))
    parser.add_argument("dir", nargs="?", help="verify-export: the export directory")
    parser.add_argument("--call", help="show, export: only the records of this call ID")
    parser.add_argument("--from", dest="since", metavar="DATE",
                        help="export: from this date (YYYY-MM-DD, local time) or date-time")
    parser.add_argument("--to", dest="until", metavar="DATE",
                        help="export: to this date, the whole day included, or date-time")
    parser.add_argument("--patient", metavar="MRN", help="export: only this patient's records")
    parser.add_argument("--format", choices=export_mod.FORMATS, default="jsonl",
                        help="export: the files' format (default jsonl)")
    parser.add_argument("--out", metavar="DIR", help="export: a new or empty directory")
    parser.add_argument("--recipient", metavar="AGE_PUBKEY",
                        help="export: encrypt every file to this age public key (age1...)")
    parser.add_argument("--identity", metavar="FILE",
                        help="verify-export: an age identity file, to check the plaintext too")
    parser.add_argument("--last", type=int, metavar="N", help="show: only the last N records")
    parser.add_argument("--json", action="store_true", help="show: one JSON object a line")
    parser.add_argument("--user", help="log in as this user (asks for the password)")


def _os_actor() -> str:
    """Who ran a command that needs no login: the operating-system account."""
    try:
        return "os:" + pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"os:uid{os.geteuid()}"


def _ask(prompt: str) -> str:
    # without a terminal getpass reads stdin (automation, tests): that is fine here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        return getpass.getpass(prompt)


def _new_password(name: str) -> str:
    first = _ask(f"new password for {name}: ")
    if _ask("again: ") != first:
        raise AuthError("the two passwords differ: nothing changed")
    return first


def _accounts(cfg: config.Config, store: Store) -> tuple[AuditLog, Users]:
    audit = AuditLog(store)
    c = cfg.compliance
    return audit, Users(store, audit, LoginPolicy(c.login_max_failures, c.login_window,
                                                  c.password_min_length))


def _open(cfg: config.Config) -> tuple[Store, AuditLog, Users]:
    store = open_store(cfg.store_path, cfg.store_key_path)
    return (store, *_accounts(cfg, store))


def _login(cfg: config.Config, users: Users, args, command: str) -> User:
    if args.user:
        name, password = args.user, _ask(f"password for {args.user}: ")
    elif cfg.credentials_path is not None:
        name, password = read_credentials(cfg.credentials_path)
    else:
        raise AuthError("log in with --user NAME (or set [compliance] credentials_file)")
    return users.authenticate(name, password, command)


def login_for(cfg: config.Config, store: Store, args, command: str,
              permission: str) -> tuple[AuditLog, User]:
    """Log in (--user, or [compliance] credentials_file) for a command of another
    part of the CLI that needs `permission`; both the login and a refusal are
    audited.  AuthError when refused."""
    audit, users = _accounts(cfg, store)
    user = _login(cfg, users, args, command)
    _authorize(audit, user, permission)
    return audit, user


def _authorize(audit: AuditLog, user: User, permission: str) -> None:
    """require(), with a refusal kept in the audit trail."""
    try:
        require(user, permission)
    except AuthError:
        audit.append("access.denied", user.name, detail={"needs": permission, "role": user.role})
        raise


def _refused(exc: Exception) -> int:
    print(f"asterisk-agent: {exc}", file=sys.stderr)
    return EX_REFUSED


# --- keys ------------------------------------------------------------------------
def cmd_keys(args, cfg: config.Config) -> int:
    key_path = cfg.store_key_path
    try:
        if args.action == "init":
            if args.if_missing and key_path.exists():
                read_key_file(key_path)  # one that exists must still be a usable key
                return 0
            write_key_file(key_path)
            print(f"key file {key_path} made (mode 0600): keep a copy somewhere safe; "
                  "without it the store cannot be read")
            return 0
        rotate_key(cfg.store_path, key_path)
        with _open(cfg)[0] as store:
            AuditLog(store).append("keys.rotate", _os_actor())
        print(f"store {cfg.store_path} re-keyed; the new key is in {key_path}")
        return 0
    except StoreError as exc:
        return _refused(exc)


# --- users -----------------------------------------------------------------------
def cmd_users(args, cfg: config.Config) -> int:
    try:
        store, audit, users = _open(cfg)
    except StoreError as exc:
        return _refused(exc)
    with store:
        try:
            return _users(args, cfg, audit, users)
        except (AuthError, StoreError) as exc:
            return _refused(exc)


def _users(args, cfg: config.Config, audit: AuditLog, users: Users) -> int:
    if args.action != "list" and not args.name:
        raise AuthError(f"users {args.action}: name the user")
    if args.action == "add" and not args.role:
        raise AuthError("users add: give the role with --role (" + ", ".join(ROLES) + ")")
    if args.action == "add" and users.count() == 0:
        # the first user: nobody to log in as yet
        if args.role != "admin":
            raise AuthError("the first user must be an admin (--role admin)")
        users.add(args.name, "admin", _new_password(args.name), _os_actor())
        print(f"user {args.name} added (admin)")
        return 0
    actor = _login(cfg, users, args, f"users {args.action}")
    if not (args.action == "passwd" and args.name == actor.name):
        _authorize(audit, actor, "users.manage")  # anyone may change their own password
    if args.action == "list":
        for user in users.list():
            print(f"{user.name:32} {user.role}")
    elif args.action == "add":
        users.add(args.name, args.role, _new_password(args.name), actor.name)
        print(f"user {args.name} added ({args.role})")
    elif args.action == "remove":
        users.remove(args.name, actor.name)
        print(f"user {args.name} removed")
    else:
        users.passwd(args.name, _new_password(args.name), actor.name)
        print(f"password of {args.name} changed")
    return 0


# --- audit -----------------------------------------------------------------------
def format_record(r: Record) -> str:
    parts = [f"{r.seq:>7}", r.at, f"{r.event:17}", r.actor]
    if r.call_id:
        parts.append(f"call={r.call_id}")
    if r.patient:
        parts.append(f"patient={r.patient}")
    if r.detail:
        parts.append(json.dumps(r.detail, sort_keys=True, ensure_ascii=False))
    return " ".join(parts)


def cmd_audit(args, cfg: config.Config) -> int:
    if args.action == "verify-export":
        return _verify_export(args)
    if args.action == "export":
        try:  # bad arguments are refused before any login
            selection = _selection(args)
        except export_mod.ExportError as exc:
            return _refused(exc)
    try:
        store, audit, users = _open(cfg)
    except StoreError as exc:
        return _refused(exc)
    with store:
        try:
            user = _login(cfg, users, args, f"audit {args.action}")
            _authorize(audit, user, f"audit.{args.action}")
        except (AuthError, StoreError) as exc:
            return _refused(exc)
        if args.action == "export":
            return _export(args, audit, user, selection)
        if args.action == "show":
            records = audit.records(call_id=args.call, last=args.last)
            for r in records:
                print(json.dumps(r.to_json(), ensure_ascii=False) if args.json else format_record(r))
            audit.append("audit.show", user.name, call_id=args.call,
                         detail={"last": args.last, "records": len(records)})
            return 0
        problem = audit.verify()
        head_seq, head_hash = audit.head()
        audit.append("audit.verify", user.name, detail={
            "intact": problem is None, "records": head_seq,
            "first_bad": None if problem is None else problem.seq})
        if problem is None:
            print(f"audit chain intact: {head_seq} records, head {head_hash}")
            return 0
        print(f"audit chain BROKEN at {problem}")
        return 1


def _selection(args) -> export_mod.Selection:
    if not (args.since and args.until and args.out):
        raise export_mod.ExportError("audit export needs --from DATE --to DATE --out DIR")
    return export_mod.Selection(export_mod.parse_when(args.since),
                                export_mod.parse_when(args.until, end=True),
                                args.call, args.patient)


def _export(args, audit: AuditLog, user: User, selection: export_mod.Selection) -> int:
    try:
        result = export_mod.export(audit.store, audit, selection, args.format, args.out,
                                   user.name, args.recipient)
    except export_mod.ExportError as exc:
        return _refused(exc)
    counts = ", ".join(f"{n} {table}" for table, n in result.counts.items())
    print(f"exported {counts} to {result.out} (chain head {result.head[0]} {result.head[1]}; "
          f"audit record {result.record.seq})")
    if not args.recipient:
        print("the files are not encrypted: keep them as safe as the store "
              "(or export with --recipient)")
    return 0


def _verify_export(args) -> int:
    if not args.dir:
        return _refused("audit verify-export: name the export directory")
    try:
        identities = export_mod.read_identities(args.identity) if args.identity else None
    except export_mod.ExportError as exc:
        return _refused(exc)
    check = export_mod.verify_export(args.dir, identities)
    for problem in check.problems:
        print(f"BAD  {problem}")
    if not check.ok:
        return 1
    m = check.manifest
    print(f"export intact: {sum(m['records'].values())} records in {len(m['files'])} files, "
          f"{m['from']} to {m['to']}, by {m['exported_by']} at {m['exported_at']}, chain head "
          f"{m['chain_head']['seq']} {m['chain_head']['hash']}")
    if not check.plaintext_checked:
        print("the files are encrypted: their ciphertext was checked; give --identity to "
              "check what is inside")
    return 0


# --- retention -------------------------------------------------------------------
def add_retention_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("purge",))
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be removed (counts and call IDs), change nothing")
    parser.add_argument("--user", help="log in as this user (asks for the password)")


def cmd_retention(args, cfg: config.Config) -> int:
    try:
        store, audit, users = _open(cfg)
    except StoreError as exc:
        return _refused(exc)
    with store:
        try:
            user = _login(cfg, users, args,
                          "retention purge" + (" --dry-run" if args.dry_run else ""))
            _authorize(audit, user, "retention.purge")
        except (AuthError, StoreError) as exc:
            return _refused(exc)
        done = retention.purge(store, audit, cfg.compliance.retention_days, user.name,
                               dry_run=args.dry_run)
        print(done.summary())
        if done.dry_run and done.calls:
            print("calls: " + " ".join(done.calls))
        return 0
