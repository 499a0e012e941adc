"""Checks for values that arrive in requests: each raises Invalid naming the field and the rule."""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Iterable

from .errors import Invalid

NAME_RE = re.compile(r"^[\w][\w .:@()+-]{0,63}$", re.UNICODE)
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
LOGIN_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
ROLES = ("admin", "auditor", "user")
MAX_BODY = 256 * 1024


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object."""
    if len(body) > MAX_BODY:
        raise Invalid(f"request body is larger than {MAX_BODY} bytes")
    if not body.strip():
        raise Invalid("request body must be a JSON object")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"malformed JSON: {exc.__class__.__name__}: {str(exc)[:80]}") from None
    if not isinstance(value, dict):
        raise Invalid("request body must be a JSON object")
    return value


def only_fields(body: dict[str, Any], allowed: Iterable[str]) -> None:
    """Refuse unknown fields, so typos and smuggled keys are not silently ignored."""
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise Invalid(f"unknown field {extra[0]!r}")


def characters(n: int) -> str:
    """'1 character', '64 characters'."""
    return f"{n} character{'' if n == 1 else 's'}"


def text(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 64, min_len: int = 0,
         pattern: re.Pattern[str] | None = None, rule: str = "", default: str = "") -> str:
    """A string field: present (if required), a string, within length, matching pattern."""
    if name not in body or body[name] is None:
        if required:
            raise Invalid(f"{name} is required")
        return default
    value = body[name]
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    if "\x00" in value:
        raise Invalid(f"{name} must not contain NUL bytes")
    if len(value) > max_len:
        raise Invalid(f"{name} must be at most {characters(max_len)}")
    if len(value) < min_len or (required and not value.strip()):
        raise Invalid(f"{name} must not be empty" if min_len <= 1 else f"{name} must be at least {characters(min_len)}")
    if pattern is not None and value and not pattern.match(value):
        raise Invalid(f"{name} {rule or 'has characters that are not allowed'}")
    return value


def integer(body: dict[str, Any], name: str, *, required: bool = True, minimum: int, maximum: int,
            default: int = 0) -> int:
    """An integer field within bounds (bools are refused)."""
    if name not in body or body[name] is None:
        if required:
            raise Invalid(f"{name} is required")
        return default
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise Invalid(f"{name} must be between {minimum} and {maximum}")
    return value


def boolean(body: dict[str, Any], name: str, *, default: bool = False) -> bool:
    if name not in body or body[name] is None:
        return default
    if not isinstance(body[name], bool):
        raise Invalid(f"{name} must be true or false")
    return body[name]


def record_id(value: Any, name: str = "id") -> str:
    """An object id from a path or body."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise Invalid(f"{name} must be an id string")
    return value


def roles(body: dict[str, Any], name: str = "roles", *, required: bool = True) -> list[str]:
    if name not in body:
        if required:
            raise Invalid(f"{name} is required")
        return ["user"]
    value = body[name]
    if not isinstance(value, list) or not value or not all(isinstance(r, str) for r in value):
        raise Invalid(f"{name} must be a non-empty list of: {', '.join(ROLES)}")
    bad = [r for r in value if r not in ROLES]
    if bad:
        raise Invalid(f"{name}: unknown role {bad[0][:20]!r}; allowed: {', '.join(ROLES)}")
    return sorted(set(value))


def tags(body: dict[str, Any], name: str = "tags") -> list[str]:
    value = body.get(name, [])
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 32 or not all(isinstance(t, str) and TAG_RE.match(t) for t in value):
        raise Invalid(f"{name} must be a list of at most 32 tags of letters, digits, '_', '.', ':' or '-'")
    return sorted(set(value))


def address(body: dict[str, Any], name: str = "address") -> str:
    """A host address: an IP address or a DNS name."""
    value = text(body, name, max_len=253)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not HOSTNAME_RE.match(value) or value.replace(".", "").isdigit():
        raise Invalid(f"{name} must be an IP address or a host name")
    return value.lower()


def query_float(value: str | None, name: str) -> float | None:
    """An epoch-seconds query parameter."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise Invalid(f"{name} must be a number (seconds since the epoch)") from None
    if not 0 <= number < 1e11:
        raise Invalid(f"{name} is out of range")
    return number


def day_range(date_from: str, date_to: str) -> tuple[float | None, float | None]:
    """A From/To pair of YYYY-MM-DD dates as epoch bounds: from the start of the first UTC day to the end of the
    last (an unreadable date is ignored, as a search box would)."""
    import calendar
    import time as _time

    def day(text: str) -> float | None:
        try:
            return float(calendar.timegm(_time.strptime(text, "%Y-%m-%d")))
        except ValueError:
            return None
    start = day(date_from) if date_from else None
    end = day(date_to) if date_to else None
    return start, (end + 86400 if end is not None else None)
