"""The one place logging is set up: every record, rendered by structlog, PHI removed.

The code logs with the standard library (`log = logging.getLogger(__name__)`,
`%s` arguments).  `setup` routes those records, and structlog's own loggers,
through one `ProcessorFormatter` chain, so that a single processor list decides
what reaches the log: the level and logger name, the exception rendered as
text, the PHI redaction step (compliance/redact.py), a timestamp, then one line
of console text or one JSON object.  Uncaught exceptions and warnings are sent
through it too: otherwise Python prints them to stderr untouched.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog

from .compliance import redact

FORMATS = ("console", "json")
# marks the handler setup() installs, so that calling it again replaces it
_HANDLER_NAME = "asterisk-agent"


def processors(fmt: str = "console", mrn_pattern: str = redact.DEFAULT_MRN_PATTERN) -> list:
    """The chain every log event goes through, last the renderer (a string out).

    The redaction step comes after the exception is rendered as text (so that
    tracebacks are scrubbed too) and before the timestamp is added (a timestamp
    is not a patient's date).
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose one of {', '.join(FORMATS)}")
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0, pad_level=False))
    return [
        structlog.processors.format_exc_info,
        redact.Redactor(mrn_pattern),
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]


def formatter(fmt: str = "console",
              mrn_pattern: str = redact.DEFAULT_MRN_PATTERN) -> logging.Formatter:
    """A stdlib formatter that renders records (stdlib or structlog) through the chain."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars,
                           structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name],
        processors=processors(fmt, mrn_pattern),
        # the record's arguments reach the redaction step, which learns Phi values from them
        pass_foreign_args=True,
    )


def setup(level: str = "info", fmt: str = "console", *,
          mrn_pattern: str = redact.DEFAULT_MRN_PATTERN, stream: TextIO | None = None) -> None:
    """Send all logging of this process to `stream` (stderr) through the PHI-free chain.

    May be called again (a command that learns its settings late): the previous
    handler is replaced, not doubled.
    """
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(fmt, mrn_pattern))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars,
                    structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                    structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def setup_from_config(cfg: Any, level: str | None = None) -> None:
    """`setup` with the [logging] settings of `cfg` and `level` or [general] log_level."""
    section = cfg.logging
    setup(level or cfg.general.log_level, section.format, mrn_pattern=section.mrn_pattern)


class _Handler(logging.StreamHandler):
    """A stream handler whose own failures print no message text.

    The stdlib's handleError prints the record's message and arguments to stderr,
    past the redaction step; this one names only where the bad call is.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        if not logging.raiseExceptions:
            return
        try:
            exc = sys.exc_info()[1]
            self.stream.write(f"--- a log record could not be written: {record.name} "
                              f"{record.pathname}:{record.lineno} ({type(exc).__name__}); "
                              "its text is withheld ---\n")
            self.flush()
        except Exception:  # the stream itself is gone: nothing left to tell
            pass


def _log_uncaught(kind, value, tb) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("asterisk_agent").critical("uncaught exception",
                                                 exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("asterisk_agent").critical(
        "uncaught exception in thread %s", name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
