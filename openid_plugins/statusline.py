"""A status line at the bottom of a terminal that log records never land on.

``openid-plugins associate --once`` shows its progress on one line rewritten in place. A log
record written while that line is up would start in the middle of it; ``StatusLineHandler``
erases the line, writes the record on its own line and draws the status again below it.
"""

from __future__ import annotations

import logging
import threading
from typing import TextIO

#: Carriage return, then "erase to end of line" (ECMA-48 EL): the line is blank again.
_ERASE = "\r\x1b[K"


class StatusLine:
    """One line of ``stream`` (a terminal) that shows the latest status text."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lock = threading.RLock()
        self._text = ""

    @property
    def text(self) -> str:
        """What the line shows now ('' when it is clear)."""
        return self._text

    def show(self, text: str) -> None:
        with self.lock:
            self.stream.write(_ERASE + text)
            self.stream.flush()
            self._text = text

    def clear(self) -> None:
        """Erase the line and leave the cursor at its start (for a summary or a log record)."""
        with self.lock:
            if self._text:
                self.stream.write(_ERASE)
                self.stream.flush()
                self._text = ""


class StatusLineHandler(logging.StreamHandler):
    """A stream handler that writes each record above the status line, never into it."""

    def __init__(self, line: StatusLine) -> None:
        super().__init__(line.stream)
        self.line = line

    def emit(self, record: logging.LogRecord) -> None:
        with self.line.lock:
            text = self.line.text
            self.line.clear()
            super().emit(record)
            if text:
                self.line.show(text)
