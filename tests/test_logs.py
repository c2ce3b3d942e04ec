"""Logging set up in one place: every record rendered by structlog, PHI removed."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest
import structlog

from asterisk_agent import config, logs
from asterisk_agent.compliance import redact
from asterisk_agent.compliance.redact import REDACTED, Phi


@pytest.fixture
def captured():
    """logs.setup into a string; the process's logging is put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook,
             structlog.get_config())
    stream = io.StringIO()
    # values other tests' calls left remembered (names, MRNs) would be scrubbed too
    redact.forget(None)

    def setup(*args, **kwargs) -> io.StringIO:
        logs.setup(*args, stream=stream, **kwargs)
        return stream

    yield setup
    handlers, level, hook, thread_hook, structlog_config = saved
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hook, thread_hook
    logging.captureWarnings(False)
    structlog.configure(**structlog_config)


def test_stdlib_records_render_as_console_lines_without_phi(captured):
    out = captured("info")
    log = logging.getLogger("asterisk_agent.agent")
    log.info("call %s from %s: start", "1795316401.6", "+15551234567")
    log.info("call %s: patient %s, born %s", "1795316401.6", Phi("Ana Rivera"), "1984-03-12")
    log.debug("not shown at info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert "[info]" in lines[0] and "asterisk_agent.agent" in lines[0]
    assert "call 1795316401.6 from [redacted]: start" in lines[0]
    assert f"call 1795316401.6: patient {REDACTED}, born {REDACTED}" in lines[1]
    assert "5551234567" not in out.getvalue() and "1984" not in out.getvalue()
    assert "Ana" not in out.getvalue() and "positional_args" not in out.getvalue()


def test_json_format_is_one_object_a_line(captured):
    out = captured("debug", "json")
    logging.getLogger("asterisk_agent.ehr.link").warning("EHR: ORM %s rejected: %s",
                                                         "2601011200004f3a", "no MRN1001")
    record = json.loads(out.getvalue())
    assert record["event"] == f"EHR: ORM 2601011200004f3a rejected: no {REDACTED}"
    assert record["level"] == "warning" and record["logger"] == "asterisk_agent.ehr.link"
    # the timestamp is added after redaction: it is not a patient's date
    assert record["timestamp"].startswith("20") and REDACTED not in record["timestamp"]


def test_a_traceback_is_logged_scrubbed(captured):
    out = captured("info")
    try:
        raise LookupError("no patient with phone 555-123-4567 born 03/12/1984")
    except LookupError:
        logging.getLogger("asterisk_agent").exception("call %s failed", "1795316401.6")
    text = out.getvalue()
    assert "call 1795316401.6 failed" in text and "Traceback" in text and "LookupError" in text
    assert "555-123" not in text and "1984" not in text, text


def test_structlog_loggers_share_the_chain(captured):
    out = captured("info", "json")
    structlog.get_logger("asterisk_agent.compliance").info(
        "audit record written", call_id="1795316401.6", patient="MRN1001", caller="5551234567")
    record = json.loads(out.getvalue())
    assert record["call_id"] == "1795316401.6"
    assert record["patient"] == record["caller"] == REDACTED
    assert record["logger"] == "asterisk_agent.compliance"


def test_setup_again_replaces_the_handler(captured):
    captured("info")
    out = captured("warning")
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "asterisk-agent"]
    assert len(ours) == 1
    logging.getLogger("x").info("quiet now")
    logging.getLogger("x").warning("loud")
    assert "quiet" not in out.getvalue() and "loud" in out.getvalue()


def test_settings_come_from_the_logging_section(captured):
    cfg = config.parse("[logging]\nformat = json\nmrn_pattern = PT-\\d{5}\n")
    stream = io.StringIO()
    captured("info")  # only for the fixture's restore
    logs.setup_from_config(cfg, "info")
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "asterisk-agent")
    handler.setStream(stream)
    logging.getLogger("x").info("patient PT-12345 and MRN1001")
    assert json.loads(stream.getvalue())["event"] == f"patient {REDACTED} and MRN1001"


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="log format"):
        logs.processors("xml")
    with pytest.raises(config.ConfigError, match=r"\[logging\] format"):
        config.parse("[logging]\nformat = xml\n")
    with pytest.raises(config.ConfigError, match="mrn_pattern"):
        config.parse("[logging]\nmrn_pattern = MRN(\n")


def test_a_broken_log_call_prints_no_arguments():
    """In a process of its own: pytest's log capture turns the error into a failure."""
    code = textwrap.dedent("""
        import logging
        from asterisk_agent import logs
        logs.setup("info")
        logging.getLogger("asterisk_agent").info("only one %s here", "Ana Rivera", "1984-03-12")
        logging.getLogger("asterisk_agent").info("still logging")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "could not be written" in proc.stderr and "withheld" in proc.stderr
    assert "still logging" in proc.stderr
    assert "Ana" not in proc.stderr and "1984" not in proc.stderr, proc.stderr


def test_warnings_go_through_the_chain(captured):
    out = captured("info")
    warnings.warn("patient MRN1001 data looks odd", UserWarning, stacklevel=1)
    assert "py.warnings" in out.getvalue() and "MRN1001" not in out.getvalue()


def test_an_exception_in_a_thread_is_logged_scrubbed(captured):
    out = captured("info")

    def work():
        raise RuntimeError("caller 5551234567 said their name")

    t = threading.Thread(target=work, name="stt-worker")
    t.start()
    t.join()
    text = out.getvalue()
    assert "uncaught exception in thread stt-worker" in text and "RuntimeError" in text
    assert "5551234567" not in text


def test_an_uncaught_exception_is_logged_scrubbed_not_printed_raw():
    """A real process dying of an exception that quotes PHI: its stderr is scrubbed."""
    code = textwrap.dedent("""
        from asterisk_agent import logs
        logs.setup("info")
        raise SystemError("patient Ana born 1984-03-12, MRN1001, phone 5551234567")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert "uncaught exception" in proc.stderr and "SystemError" in proc.stderr, proc.stderr
    for secret in ("1984", "MRN1001", "5551234567"):
        assert secret not in proc.stderr, proc.stderr
