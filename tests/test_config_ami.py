"""[ami]: read once, checked before anything starts; the secret only ever in a private file."""

from __future__ import annotations

from pathlib import Path

import pytest

from asterisk_agent import config
from asterisk_agent.telephony.ami import read_secret

ROOT = Path(__file__).resolve().parents[1]


def test_sample_configs():
    sample = config.load(ROOT / "etc" / "asterisk-agent.conf")
    assert sample.ami.username == ""          # AMI is not used until configured
    sandbox = config.load(ROOT / "etc" / "sandbox.conf")
    assert (sandbox.ami.host, sandbox.ami.port, sandbox.ami.username) == \
        ("127.0.0.1", 5038, "asterisk-agent")
    assert "~" not in str(sandbox.ami_secret_path)
    # the sandbox asks about the front desk's queue of its own queues.conf
    from asterisk_agent.pbx.sandbox import QUEUES_CONF
    assert not sandbox.ami.operator_devices
    assert f"[{sandbox.ami.operator_queue}]" in QUEUES_CONF


def test_an_ami_section_is_read(tmp_path):
    cfg = config.parse("[ami]\nhost = 10.0.0.5\nport = 5039\nusername = agent\n"
                       "secret_file = ami.secret\ntimeout = 0.5\n"
                       "operator_devices = PJSIP/desk1, PJSIP/desk2\n"
                       "oncall_queue = on-call\n", tmp_path / "agent.conf")
    a = cfg.ami
    assert (a.host, a.port, a.username, a.timeout) == ("10.0.0.5", 5039, "agent", 0.5)
    assert a.operator_devices == ("PJSIP/desk1", "PJSIP/desk2") and a.operator_queue == ""
    assert a.oncall_queue == "on-call" and a.oncall_devices == ()
    # relative to the config file, like the store's key file
    assert cfg.ami_secret_path == tmp_path / "ami.secret"


@pytest.mark.parametrize("text, message", [
    ("[ami]\nusername = agent\nsecret = change-me\n", ":3: unknown setting 'secret' in \\[ami\\]"),
    ("[ami]\noperator_devices = PJSIP/desk1\n",
     "operator_devices is set but \\[ami\\] username is empty"),
    ("[ami]\nusername = agent\noperator_devices = desk1\n",
     "'desk1' is not a phone as Asterisk names it"),
    ("[ami]\nusername = agent\noncall_devices = PJSIP/a(b)\n", "oncall_devices: 'PJSIP/a\\(b\\)'"),
    ("[ami]\nusername = agent\noperator_queue = front desk\n", "not a queue name"),
    ("[ami]\nusername = agent\nport = 70000\n", "not a valid address"),
    ("[ami]\nusername = agent\nport = AMI\n", "\\[ami\\] port: invalid literal"),
    ("[ami]\nusername = agent\ntimeout = 0\n", "timeout must be above 0"),
    ("[ami]\nusername = agent\nsecret_file =\n", "never the secret itself"),
])
def test_ami_mistakes_are_named(text, message):
    with pytest.raises(config.ConfigError, match=message):
        config.parse(text, Path("/etc/asterisk-agent/asterisk-agent.conf"))


def test_the_secret_comes_from_a_private_file(tmp_path):
    f = tmp_path / "ami.secret"
    f.write_text("s3cret\n")
    f.chmod(0o600)
    assert read_secret(f) == "s3cret"
    f.chmod(0o640)
    with pytest.raises(config.ConfigError, match="open to group or others.*chmod 600"):
        read_secret(f, tmp_path / "agent.conf")
    with pytest.raises(config.ConfigError, match="no AMI secret file"):
        read_secret(tmp_path / "missing")


@pytest.mark.parametrize("text", ["", "\n", "two\nlines\n"])
def test_a_secret_file_without_one_secret_line_is_refused(tmp_path, text):
    f = tmp_path / "ami.secret"
    f.write_text(text)
    f.chmod(0o600)
    with pytest.raises(config.ConfigError, match="on one line"):
        read_secret(f)
