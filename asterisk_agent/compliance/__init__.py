"""Compliance: the encrypted store, the tamper-evident audit trail, users and roles.

store.py   one SQLCipher file for everything with patient data in it, its key
           file, schema migrations and key rotation
audit.py   append-only audit records chained by SHA-256, and their verification
users.py   users with roles, argon2 password hashes, rate-limited logins
cli.py     `asterisk-agent keys | users | audit`
redact.py  no PHI in the operational logs
egress.py  no network connection outside the configured allowlist
"""
