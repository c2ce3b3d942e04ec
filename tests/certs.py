"""A throw-away certificate authority for the TLS tests (made with openssl)."""

from __future__ import annotations

import subprocess


def make_ca(tmp_path):
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    sh = f"""
    set -e; cd {tmp_path}
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
    for who in server client; do
      openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1' > $who.ext
      openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2 -extfile $who.ext 2>/dev/null
    done
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj /CN=other 2>/dev/null
    """
    subprocess.run(["bash", "-c", sh], check=True, timeout=60)
    return tmp_path
