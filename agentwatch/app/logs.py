"""How ``serve`` writes its log: text lines for a person, or one JSON object per line for a log shipper.

The same records either way: agentwatch's own lines (``agentwatch.*``, with their structured fields, e.g. the
``agentwatch.api.refused`` line of each refused request), uvicorn's, and in JSON any other library's and Python's
warnings too, so that every line of the stream parses.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Every attribute a LogRecord has by itself; anything else on a record came from `extra=` and is a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# uvicorn's loggers: it configures them itself from the dict `uvicorn_log_config` returns.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, RFC 3339), level, logger, message, the record's `extra=` fields, and
    the traceback (`exc_info`) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES and not k.startswith("_")})
        line.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format is LogFormat.json else logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: LogFormat) -> None:
    """agentwatch's lines on stderr in `log_format`; in JSON, every other logger's (and Python's warnings) too."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    own = logging.getLogger("agentwatch")
    for old in list(own.handlers):  # a second configuration (tests, the demo) replaces the first
        own.removeHandler(old)
    own.addHandler(handler)
    own.setLevel(logging.INFO)
    own.propagate = False
    if log_format is LogFormat.json:
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(handler)
        logging.captureWarnings(True)


def uvicorn_log_config(log_format: LogFormat) -> dict[str, Any]:
    """What uvicorn.Config takes as `log_config`: its loggers write in the same format as agentwatch's."""
    chosen = {"()": f"{__name__}.JsonFormatter"} if log_format is LogFormat.json else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"chosen": chosen},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "chosen",
                                "stream": "ext://sys.stderr"}},
        "loggers": {name: {"handlers": ["stderr"] if name == "uvicorn" else [], "level": "INFO",
                           "propagate": name != "uvicorn"} for name in UVICORN_LOGGERS},
    }
