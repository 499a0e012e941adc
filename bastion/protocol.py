"""Wire messages, typed and validated in one place: parse, check, then act.

Terminal socket, client → server (text JSON):
  {"type": "input", "data": "..."}            keystrokes / paste (≤ MAX_INPUT characters)
  {"type": "resize", "cols": N, "rows": N}    PTY size (1..MAX_COLS × 1..MAX_ROWS)
Server → client: binary frames are raw terminal output; text JSON control frames are
  {"type": "session", "id": "..."}, {"type": "notice", "message": "..."}, {"type": "closed", "reason": "..."},
  and on monitor sockets also {"type": "resize", ...} and {"type": "command", "command": "...", "blocked": bool}.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Union

from .errors import Invalid

MAX_INPUT = 64 * 1024
MAX_COLS = 1000
MAX_ROWS = 500


@dataclass(frozen=True)
class InputFrame:
    data: str


@dataclass(frozen=True)
class ResizeFrame:
    cols: int
    rows: int


ClientFrame = Union[InputFrame, ResizeFrame]


def check_size(cols: Any, rows: Any) -> tuple[int, int]:
    """A terminal size within bounds (bools and strings refused)."""
    for name, value, top in (("cols", cols, MAX_COLS), ("rows", rows, MAX_ROWS)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{name} must be an integer")
        if not 1 <= value <= top:
            raise Invalid(f"{name} must be between 1 and {top}")
    return cols, rows


def parse_size_args(cols: str | None, rows: str | None) -> tuple[int, int]:
    """?cols=&rows= from the socket URL (defaults 80×24)."""
    try:
        c = 80 if cols in (None, "") else int(cols)
        r = 24 if rows in (None, "") else int(rows)
    except ValueError:
        raise Invalid("cols and rows must be integers") from None
    return check_size(c, r)


def parse_client_frame(message: str | bytes) -> ClientFrame:
    """Parse one frame from a terminal client; raises Invalid with a message fit for a notice."""
    if isinstance(message, bytes):
        raise Invalid("binary frames are not accepted; send JSON text frames")
    if len(message) > MAX_INPUT * 6 + 1024:
        raise Invalid("frame too large")
    try:
        frame = json.loads(message)
    except ValueError:
        raise Invalid("frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise Invalid("frame must be a JSON object")
    kind = frame.get("type")
    if kind == "input":
        data = frame.get("data")
        if not isinstance(data, str):
            raise Invalid("input data must be a string")
        if len(data) > MAX_INPUT:
            raise Invalid(f"input frame larger than {MAX_INPUT} characters was dropped")
        return InputFrame(data)
    if kind == "resize":
        cols, rows = check_size(frame.get("cols"), frame.get("rows"))
        return ResizeFrame(cols, rows)
    raise Invalid("unknown frame type; expected 'input' or 'resize'")


def control(kind: str, **fields: Any) -> str:
    """A server → client control frame."""
    return json.dumps({"type": kind, **fields})
