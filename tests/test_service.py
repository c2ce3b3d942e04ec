"""Running as a systemd service: the unit in etc/ and the key as a systemd credential.

The unit is checked by systemd's own parser (`systemd-analyze verify`, offline);
the credential is read the way systemd hands it over (a file named after the
credential in $CREDENTIALS_DIRECTORY, readable by the service's user only).
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asterisk_agent import config
from asterisk_agent.compliance.store import StoreError, open_store, write_key_file

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "etc" / "asterisk-agent.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_passes_systemds_own_check(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (tools/setup --test)")
    # the unit names the installed command; here, the one in this environment
    command = Path(sys.prefix) / "bin" / "asterisk-agent"
    assert command.exists(), f"{command}: run tools/setup (pip install -e .)"
    text = UNIT.read_text().replace("/opt/asterisk-agent/bin/asterisk-agent", str(command))
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                          timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if UNIT.name in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def test_the_unit_runs_serve_with_the_installed_config_and_the_key_credential():
    service = unit()["Service"]
    assert re.search(r"--config /etc/asterisk-agent/asterisk-agent\.conf serve$",
                     service["ExecStart"]), service["ExecStart"]
    name, source = service["LoadCredential"].split(":", 1)
    assert source == str(config.Compliance.key_file)
    # the sample configuration names the same credential
    sample = (ROOT / "etc" / "asterisk-agent.conf").read_text()
    assert f";key_credential = {name}\n" in sample
    assert service["StateDirectory"] == "asterisk-agent" == config.General.state_dir.name


def credential_config(tmp_path: Path, name: str = "store.key") -> config.Config:
    return config.parse(f"[general]\nstate_dir = {tmp_path / 'state'}\n"
                        f"[compliance]\nkey_file = {tmp_path / 'etc' / 'store.key'}\n"
                        f"key_credential = {name}\n", tmp_path / "asterisk-agent.conf")


def test_under_systemd_the_key_comes_from_the_credential(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    key = write_key_file(credentials / "store.key")
    (credentials / "store.key").chmod(0o400)  # as systemd leaves it
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    cfg = credential_config(tmp_path)
    assert cfg.store_key_path == credentials / "store.key"
    cfg.store_path.parent.mkdir(parents=True)
    open_store(cfg.store_path, cfg.store_key_path).close()
    # the same store opens from a shell with key_file holding the same key
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert cfg.store_key_path == tmp_path / "etc" / "store.key"
    with pytest.raises(StoreError, match="no key file"):
        open_store(cfg.store_path, cfg.store_key_path, create=False)
    write_key_file(cfg.store_key_path, key)
    open_store(cfg.store_path, cfg.store_key_path, create=False).close()


def test_a_credential_the_service_was_not_given_is_a_clear_error(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    cfg = credential_config(tmp_path, "other.key")
    with pytest.raises(StoreError, match=re.escape(str(credentials / "other.key"))):
        open_store(tmp_path / "store.db", cfg.store_key_path)
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize("name", ["../store.key", "a/b", ".."])
def test_a_credential_name_with_a_path_in_it_is_refused(tmp_path, name):
    with pytest.raises(config.ConfigError, match="key_credential"):
        credential_config(tmp_path, name)


def test_without_credentials_the_setting_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert credential_config(tmp_path).store_key_path == tmp_path / "etc" / "store.key"
