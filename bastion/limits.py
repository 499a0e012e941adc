"""Process and HTTP server limits: private files, open-file limit, timeouts against slow or hostile clients.

Tornado 6 has no separate header timeout: HTTPServer's `idle_connection_timeout` is also the deadline for a
request's headers (HTTP1ConnectionParameters.header_timeout). It is an absolute deadline from the moment the
connection waits for a request, not reset by each byte, so a slowloris client that sends a byte a second is
closed when it runs out, like an idle keep-alive connection. `body_timeout` bounds the time a body may take.
Upgraded WebSockets are outside both (their liveness is the ping settings).
"""
from __future__ import annotations

import logging
import os
import resource
from typing import Any

from .config import Config
from .errors import ConfigError

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
MAX_HEADER = 64 * 1024
OPEN_FILES_CEILING = 1 << 20  # do not ask for more than this even when the hard limit is unlimited


def http_server_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for tornado's HTTPServer: header/idle and body timeouts, size limits."""
    return {"xheaders": False, "max_body_size": MAX_BODY, "max_header_size": MAX_HEADER,
            "idle_connection_timeout": float(config.server.idle_timeout),
            "body_timeout": float(config.server.body_timeout)}


def raise_open_files_limit(minimum: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; ConfigError if the result is below `minimum`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_CEILING)
    if soft == resource.RLIM_INFINITY or soft >= target:
        target = soft
    else:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target = soft
    if target != resource.RLIM_INFINITY and target < minimum:
        raise ConfigError(f"the open-files limit is {target} (hard limit {hard}); [server] min_open_files needs at "
                          f"least {minimum}: raise it (ulimit -n, LimitNOFILE=) or lower min_open_files")
    log.info("open-files limit %s (hard %s)", target, hard)
    return target


def prepare_process(config: Config) -> None:
    """Process-wide settings made once at start: private files (umask 077) and a raised, checked open-files limit."""
    os.umask(0o077)  # every file and directory this process makes is private (database, WAL, recordings)
    raise_open_files_limit(config.server.min_open_files)
