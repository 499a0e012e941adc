"""Metadata storage: the Store interface and its SQLite (default) and MongoDB implementations."""
from __future__ import annotations

from ..config import Config
from .base import Page, Query, Store, page_bounds
from .records import (AccessLock, ApiToken, App, Command, CommandRule, Credential, Event, Failure, Grant, Host, Login, LoginRule,
                      ModuleState, Node, Record, Passkey, PasskeyChallenge, Run, SeenEnvelope, Session, Setting, SsoState, User, new_id,
                      SSHKey)
from .records import Cluster, PodGrant


def make_store(config: Config) -> Store:
    """Build the store the config's [database] url names (not yet opened)."""
    url = config.database.url
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore
        return SQLiteStore(url[len("sqlite:///"):], timeout=config.database.timeout)
    from .mongo import MongoStore
    return MongoStore(url, timeout=config.database.timeout)


__all__ = ["AccessLock", "Store", "Query", "Page", "page_bounds", "make_store", "ApiToken", "App", "Command", "CommandRule", "Credential",
           "Event", "Failure", "Grant", "Host", "Login", "ModuleState", "Node", "Record", "Run", "SeenEnvelope", "Session",
           "User", "new_id", "LoginRule", "Setting", "Cluster", "PodGrant", "SsoState", "Passkey", "PasskeyChallenge",
           "SSHKey"]
