"""The configuration loads once, and a typo is refused with its file and line."""

from pathlib import Path

import pytest

from asterisk_agent import config

ROOT = Path(__file__).resolve().parents[1]


def test_sample_configs_load():
    sample = config.load(ROOT / "etc" / "asterisk-agent.conf")
    assert sample.ari.app == "ai-agent"
    assert sample.media.format == "ulaw"
    assert sample.practice_path == ROOT / "etc" / "practice.conf"
    sandbox = config.load(ROOT / "etc" / "sandbox.conf")
    assert sandbox.asterisk_sounds_dir == "/var/lib/asterisk-agent/sounds"
    assert "~" not in str(sandbox.sounds.dir)  # expanded


def test_unknown_key_names_file_and_line(tmp_path):
    f = tmp_path / "a.conf"
    f.write_text("[ari]\nurl = http://127.0.0.1:8088/ari\npasword = x\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(f)
    assert f"{f.resolve()}:3:" in str(err.value) and "pasword" in str(err.value)


def test_unknown_section(tmp_path):
    f = tmp_path / "a.conf"
    f.write_text("[general]\n\n[aari]\nurl = x\n")
    with pytest.raises(config.ConfigError, match=r":3: unknown section \[aari\]"):
        config.load(f)


@pytest.mark.parametrize("text, message", [
    ("[media]\nformat = slin16\n", "choose one of ulaw, slin"),
    ("[media]\nrtp_port_start = many\n", "invalid literal"),
    ("[vad]\naggressiveness = 7\n", "0 to 3"),
    ("[vad]\nturn_threshold = 1.5\n", "turn_threshold = 1.5: use a probability"),
    ("[vad]\nturn_threshold = 0\n", "turn_threshold = 0.0: use a probability"),
    ("[vad]\npause_ms = 0\n", "turn_model is asked at the pause: it needs pause_ms"),
    ("[vad]\nhold_ms = -5\n", "hold_ms = -5: must not be negative"),
    ("[vad]\ncomplete_ms = 600\n", "complete_ms = 600: must lie between pause_ms \\(150\\) and "
                                    "silence_ms \\(500\\)"),
    ("[ari]\nurl = 127.0.0.1:8088\n", "must start with http"),
    ("[ari]\nurl = http://x/ari\nthis line has no equals sign\n", ":3: cannot read"),
    ("url = x\n", ":1: a \\[section\\] header must come first"),
])
def test_bad_values_are_clear(text, message):
    with pytest.raises(config.ConfigError, match=message):
        config.parse(text)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(config.ConfigError, match="--config"):
        config.load(tmp_path / "nope.conf")


def test_ehr_section(tmp_path):
    cfg = config.parse("[general]\nstate_dir = /srv/agent\n[ehr]\nhost = 10.0.0.5\nport = 6661\n")
    assert (cfg.ehr.host, cfg.ehr.port) == ("10.0.0.5", 6661)
    assert str(cfg.ehr_outbox_path) == "/srv/agent/ehr-outbox.sqlite3"
    with pytest.raises(config.ConfigError, match="hots"):
        config.parse("[ehr]\nhots = x\n")


def test_dialog_limits_are_read_and_checked():
    cfg = config.parse("[dialog]\nmax_id_failures = 3\nmax_misses = 2\nrefill_provider = DRLEE\n")
    assert (cfg.dialog.max_id_failures, cfg.dialog.max_misses, cfg.dialog.refill_provider) == \
        (3, 2, "DRLEE")
    with pytest.raises(config.ConfigError, match=r"\[dialog\] max_id_failures"):
        config.parse("[dialog]\nmax_misses = 0\n")


def test_agi_section_is_read_and_checked():
    assert config.parse("").agi.listen == "127.0.0.1:4573"
    cfg = config.parse("[agi]\nlisten = 10.0.0.7:4600\n")
    assert cfg.agi.listen == "10.0.0.7:4600"
    # empty: no FastAGI server
    assert config.parse("[agi]\nlisten =\n").agi.listen == ""
    with pytest.raises(config.ConfigError, match=r"\[agi\] listen '4573': write HOST:PORT, "
                                                 r"e\.g\. 127\.0\.0\.1:4573"):
        config.parse("[agi]\nlisten = 4573\n")
    with pytest.raises(config.ConfigError, match=r"the same as \[metrics\] listen"):
        config.parse("[agi]\nlisten = 127.0.0.1:9465\n")
    with pytest.raises(config.ConfigError, match=r":2: unknown setting 'port' in \[agi\]"):
        config.parse("[agi]\nport = 4573\n")
