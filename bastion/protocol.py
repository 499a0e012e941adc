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


# ---- Encrypted command envelope ---------------------------------------------------------------------
# Every module run reaches the executor as a sealed envelope: "bst1.<key id>.<base64url(nonce || AEAD)>".
# ChaCha20-Poly1305 with a 96-bit random nonce; the version and key id are authenticated as associated data.
# The payload binds module id, host ids, params, user, issued-at and a unique id. Replaces OMServer's RC4.
import base64  # noqa: E402
import os  # noqa: E402
import re as _re  # noqa: E402
import time as _time  # noqa: E402
import uuid  # noqa: E402
from typing import Callable  # noqa: E402

from cryptography.exceptions import InvalidTag  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

ENVELOPE_VERSION = "bst1"
MAX_AGE = 300.0  # seconds an envelope stays acceptable
MAX_SKEW = 60.0  # issued-at may be this far in the future (clock skew)
_KID_RE = _re.compile(r"^[A-Za-z0-9:_-]{1,80}$")


class EnvelopeError(Invalid):
    """A command envelope was refused; `code` says why (each reason has its own message)."""

    status = 400


def b64encode(data: bytes) -> str:
    """Unpadded base64url, the text form of an envelope's sealed part."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """The inverse of `b64encode` (raises binascii.Error on bad text)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_payload(module_id: str, host_ids: list[str], params: dict[str, Any], user: str,
                now: float | None = None) -> dict[str, Any]:
    """The payload a client seals: what to run, where, as whom, when, and a unique id."""
    return {"v": 1, "module_id": module_id, "hosts": list(host_ids), "params": dict(params), "user": user,
            "iat": round(now if now is not None else _time.time(), 3), "jti": uuid.uuid4().hex}


def seal(key: bytes, kid: str, payload: dict[str, Any]) -> str:
    """Seal a payload under a 32-byte key."""
    if not _KID_RE.match(kid):
        raise ValueError("bad key id")
    nonce = os.urandom(12)
    aad = f"{ENVELOPE_VERSION}.{kid}".encode()
    sealed = ChaCha20Poly1305(key).encrypt(nonce, json.dumps(payload, separators=(",", ":")).encode(), aad)
    return f"{ENVELOPE_VERSION}.{kid}.{b64encode(nonce + sealed)}"


def open_envelope(envelope: Any, key_for: Callable[[str], bytes | None], now: float | None = None) -> dict[str, Any]:
    """Open and check an envelope (not the replay guard, which needs the store): raises EnvelopeError."""
    if not isinstance(envelope, str) or len(envelope) > 64 * 1024:
        raise EnvelopeError("malformed envelope: expected a string of at most 64 KiB", code="envelope_malformed")
    parts = envelope.split(".")
    if len(parts) != 3 or not _KID_RE.match(parts[1]):
        raise EnvelopeError("malformed envelope: expected bst1.<key id>.<data>", code="envelope_malformed")
    version, kid, body = parts
    if version != ENVELOPE_VERSION:
        raise EnvelopeError(f"unsupported envelope version {version[:10]!r}", code="envelope_version")
    key = key_for(kid)
    if key is None:
        raise EnvelopeError(f"unknown key id {kid!r}", code="envelope_unknown_key")
    try:
        raw = b64decode(body)
    except (ValueError, TypeError):
        raise EnvelopeError("malformed envelope: data is not base64url", code="envelope_malformed") from None
    if len(raw) < 12 + 16:
        raise EnvelopeError("malformed envelope: too short", code="envelope_malformed")
    try:
        plain = ChaCha20Poly1305(key).decrypt(raw[:12], raw[12:], f"{version}.{kid}".encode())
    except InvalidTag:
        raise EnvelopeError("envelope failed authentication (bad tag): it was altered or sealed with another key",
                            code="envelope_bad_tag") from None
    try:
        payload = json.loads(plain)
    except ValueError:
        raise EnvelopeError("malformed envelope payload", code="envelope_malformed") from None
    if (not isinstance(payload, dict) or payload.get("v") != 1 or not isinstance(payload.get("module_id"), str)
            or not isinstance(payload.get("hosts"), list) or not isinstance(payload.get("params"), dict)
            or not isinstance(payload.get("user"), str) or not isinstance(payload.get("jti"), str)
            or isinstance(payload.get("iat"), bool) or not isinstance(payload.get("iat"), (int, float))
            or not _re.fullmatch(r"[0-9a-f]{32}", payload["jti"])):
        raise EnvelopeError("malformed envelope payload: missing or mistyped fields", code="envelope_malformed")
    now = _time.time() if now is None else now
    if payload["iat"] < now - MAX_AGE:
        raise EnvelopeError(f"stale envelope: issued {int(now - payload['iat'])} s ago (limit {int(MAX_AGE)} s)",
                            code="envelope_stale")
    if payload["iat"] > now + MAX_SKEW:
        raise EnvelopeError("envelope issued in the future: check the client's clock", code="envelope_stale")
    return payload


def server_envelope_key(secret: bytes) -> bytes:
    """The key web-form runs are sealed with (key id "server")."""
    from .vault import derive_key
    return derive_key(secret, b"bastion envelope server v1")


def token_envelope_key(token: str) -> bytes:
    """The key a script derives from its API token (key id "tok:<token id>"); the server keeps it vaulted."""
    from .vault import derive_key
    return derive_key(token.encode(), b"bastion envelope token v1")


def token_key_id(token: str) -> str:
    """The key id for an API token `bst_<id>_<secret>`."""
    return "tok:" + token[len("bst_"):].partition("_")[0]
