"""Logging: structlog over the standard library, one logger per identity and agent.

Loggers are named for what they speak for (``salon.agent.coder``,
``salon.sync.@salon_coder:localhost``). Message bodies and tokens are never
logged at INFO.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path

import structlog


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (test runners swap and close it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


# The log file rolls over at this size; this many older files are kept (salon.log.1 …).
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 3


class _PrivateLogFile(logging.handlers.RotatingFileHandler):
    """A rotating log file created owner-only (log lines name users and rooms)."""

    _regular = True  # a regular file (only one is rolled over: not /dev/null, say)

    def _open(self) -> io.TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        """The standard handler's, with the line formatted once: its size check formats
        it a second time and looks the path up twice, for every line (at ``info`` a
        few lines a message, and the biggest part of their cost)."""
        try:
            line = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            if self.maxBytes > 0 and self._regular:
                self.stream.seek(0, 2)  # another writer may have appended
                if self.stream.tell() + len(line) >= self.maxBytes:
                    self.doRollover()
            self.stream.write(line)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class _BoundLogger(structlog.stdlib.BoundLogger):
    """Debug and info calls below the level return at once: several run per message,
    and even dropped by the first processor each cost a few microseconds (a call
    chain and an exception), seven times this check."""

    def debug(self, event: str | None = None, *args: object, **kw: object) -> None:
        if self._logger.isEnabledFor(logging.DEBUG):
            super().debug(event, *args, **kw)

    def info(self, event: str | None = None, *args: object, **kw: object) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            super().info(event, *args, **kw)


def configure(
    level: str = "info",
    *,
    file: Path | None = None,
    console_level: str | None = None,
    max_bytes: int = LOG_FILE_MAX_BYTES,
    backups: int = LOG_FILE_BACKUPS,
) -> None:
    """Send logs to stderr (at ``console_level``) and optionally to ``file`` (at ``level``).

    ``file`` gets one JSON object per line (what `salon logs` reads); it rolls
    over at ``max_bytes``, keeping ``backups`` older files, and is owner-only.
    """
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        # A call below the level is dropped first, before the time stamp and the rest are
        # made for nothing (several INFO lines per message at a WARNING level).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=_BoundLogger,
        cache_logger_on_first_use=True,
    )
    # No formatter here shows a record's call site, thread or process: the standard
    # library need not find them for every line (its documented switches, see the
    # logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_level = getattr(logging, level.upper(), logging.INFO)
    console = _StderrHandler()
    console.setLevel(getattr(logging, (console_level or level).upper(), logging.INFO))
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
            ],
            foreign_pre_chain=shared,
        )
    )
    root.addHandler(console)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = _PrivateLogFile(file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        to_file.setLevel(file_level)
        to_file.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(),
                ],
                foreign_pre_chain=shared,
            )
        )
        root.addHandler(to_file)
    root.setLevel(min(console.level, file_level))
    # mautrix and aiohttp speak at DEBUG/INFO about every request; keep them quiet.
    for noisy in ("mau", "aiohttp", "mautrix", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
