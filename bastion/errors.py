"""Domain errors with stable codes; handlers/base.py maps them to HTTP statuses or `closed` frames."""
from __future__ import annotations


class BastionError(Exception):
    """Base class of every error the domain raises on purpose."""

    status = 400
    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class Invalid(BastionError):
    """The request is malformed or a value fails validation."""

    status = 400
    code = "invalid"


class Unauthenticated(BastionError):
    """No valid login, token or TOTP step."""

    status = 401
    code = "unauthenticated"


class Forbidden(BastionError):
    """Authenticated, but not allowed to do this."""

    status = 403
    code = "forbidden"


class NotFound(BastionError):
    """The object does not exist (or the caller may not know it exists)."""

    status = 404
    code = "not_found"


class Conflict(BastionError):
    """Duplicate name, ended session, or another state clash."""

    status = 409
    code = "conflict"


class Locked(BastionError):
    """Too many failed logins for this account or client address."""

    status = 429
    code = "locked"


class Unavailable(BastionError):
    """A dependency (database, host, hub) cannot be reached right now."""

    status = 503
    code = "unavailable"


class ConfigError(BastionError):
    """A configuration value is wrong; the message names the option and what is allowed."""

    code = "config"
