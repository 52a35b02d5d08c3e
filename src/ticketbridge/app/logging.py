"""structlog JSON on stdout (console renderer on a terminal); stdlib logs through the same."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

# httpx logs every request URL at INFO; for VictorOps the URL is the credential.
_QUIET = ("httpx", "httpcore", "hpack", "alembic")


def configure_logging(*, fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and stdlib logging once, at process start (never at import)."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # A call below ``level`` returns at once: no context copy, no processors (the stdlib
        # BoundLogger ran the whole chain before the stdlib logger dropped the line).
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One canonical line per request comes from our middleware; uvicorn's access log repeats it.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
