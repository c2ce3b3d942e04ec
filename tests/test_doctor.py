"""`asterisk-agent doctor` against the real sandbox: green only when every part works."""

import socket
import subprocess
import sys

from pathlib import Path

SANDBOX_CONF = Path(__file__).resolve().parents[1] / "etc" / "sandbox.conf"


def doctor(conf) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asterisk_agent", "doctor", "-c", str(conf)],
                          capture_output=True, text=True, timeout=300)


def with_changes(tmp_path, **sections) -> str:
    """etc/sandbox.conf with some settings changed, written to a temp file."""
    text = SANDBOX_CONF.read_text()
    for section, values in sections.items():
        for key, value in values.items():
            text = text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1) \
                if f"\n{key} =" not in text else "\n".join(
                    f"{key} = {value}" if line.startswith(f"{key} =") else line
                    for line in text.splitlines())
    f = tmp_path / "agent.conf"
    f.write_text(text)
    (tmp_path / "practice.conf").write_text((SANDBOX_CONF.parent / "practice.conf").read_text())
    return str(f)


def test_all_green_when_everything_works(pbx):
    r = doctor(SANDBOX_CONF)
    assert r.returncode == 0, r.stdout + r.stderr
    for part in ("configuration", "practice file", "encrypted store", "recordings directory",
                 "text-to-speech", "speech-to-text", "end-of-turn model (smart-turn)",
                 "ARI reachable", "dialplan/ai-agent.conf loaded",
                 "Asterisk can play the agent's sound files", "FastAGI address",
                 "AMI reachable, login accepted", "AMI: operator"):
        assert f"PASS  {part}" in r.stdout, r.stdout


def test_wrong_ari_password_fails_with_hint(pbx, tmp_path):
    r = doctor(with_changes(tmp_path, ari={"password": "wrong"}))
    assert r.returncode == 1
    assert "FAIL  ARI credentials" in r.stdout and "ari.conf" in r.stdout, r.stdout


def test_sounds_dir_asterisk_cannot_see_fails(pbx, tmp_path):
    r = doctor(with_changes(tmp_path, sounds={"asterisk_dir": "/nonexistent/sounds"}))
    assert r.returncode == 1
    assert "FAIL  Asterisk can play the agent's sound files" in r.stdout, r.stdout


def test_a_turn_model_that_is_not_one_fails_with_its_file(tmp_path):
    bad = tmp_path / "turn.onnx"
    bad.write_bytes(b"\0" * 1000)
    conf = Path(with_changes(tmp_path))
    assert "[vad]" not in conf.read_text()
    conf.write_text(conf.read_text() + f"\n[vad]\nturn_model = {bad}\n")
    r = doctor(conf)
    assert r.returncode == 1
    assert f"FAIL  end-of-turn model ({bad}): {bad}: not a loadable ONNX model" in r.stdout, \
        r.stdout


def test_a_missing_store_key_fails_with_hint(tmp_path):
    r = doctor(with_changes(tmp_path, compliance={"key_file": str(tmp_path / "no.key")}))
    assert r.returncode == 1
    assert "FAIL  encrypted store" in r.stdout and "keys init" in r.stdout, r.stdout
    assert not (tmp_path / "no.key").exists()


def test_config_typo_fails(tmp_path):
    f = tmp_path / "bad.conf"
    f.write_text("[ari]\nusername = a\npassword = b\nurll = http://x/ari\n")
    r = doctor(f)
    assert r.returncode == 1 and "FAIL  configuration" in r.stdout and ":4:" in r.stdout


def test_a_wrong_ami_secret_fails_with_hint(pbx, tmp_path):
    secret = tmp_path / "ami.secret"
    secret.write_text("not-the-secret\n")
    secret.chmod(0o600)
    r = doctor(with_changes(tmp_path, ami={"secret_file": str(secret)}))
    assert r.returncode == 1
    assert "FAIL  AMI reachable, login accepted" in r.stdout and "refused the login" in r.stdout, \
        r.stdout
    assert "manager.conf" in r.stdout, r.stdout


def test_a_phone_asterisk_does_not_have_fails(pbx, tmp_path):
    r = doctor(with_changes(tmp_path, ami={"operator_devices": "PJSIP/no-such-phone"}))
    assert r.returncode == 1
    assert "FAIL  AMI: operator" in r.stdout and "PJSIP/no-such-phone INVALID" in r.stdout, \
        r.stdout


def test_an_agi_port_held_by_something_that_does_not_listen_fails(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        conf = Path(with_changes(tmp_path))
        assert "[agi]" not in conf.read_text()
        conf.write_text(conf.read_text() + f"\n[agi]\nlisten = 127.0.0.1:{port}\n")
        r = doctor(conf)
    assert r.returncode == 1
    assert f"FAIL  FastAGI address: 127.0.0.1:{port}" in r.stdout and "[agi] listen" in r.stdout, \
        r.stdout
