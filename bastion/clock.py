"""The access clock: what access expiry, held-command timeouts and invitations measure time with.

It is the wall clock, moved by an offset that tests set (`advance`, or `[access] clock_file`, a file holding a
number of seconds, read again whenever it changes), so expiries of hours can be tested in seconds.
"""
from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)


class Clock:
    """Epoch seconds, plus an offset tests can move."""

    def __init__(self, offset_file: str = "") -> None:
        self.offset = 0.0
        self._file = offset_file
        self._file_offset = 0.0
        self._file_mtime: float | None = None

    def advance(self, seconds: float) -> None:
        """Move the clock forward (tests)."""
        self.offset += seconds

    def _read_file(self) -> float:
        try:
            mtime = os.stat(self._file).st_mtime_ns
        except OSError:
            return 0.0
        if mtime != self._file_mtime:
            self._file_mtime = mtime
            try:
                with open(self._file, encoding="ascii") as fh:
                    self._file_offset = float(fh.read().strip() or 0)
            except (OSError, ValueError):
                log.warning("clock file %s does not hold a number of seconds; ignored", self._file)
                self._file_offset = 0.0
        return self._file_offset

    def now(self) -> float:
        """The access clock's current time (epoch seconds)."""
        return time.time() + self.offset + (self._read_file() if self._file else 0.0)
