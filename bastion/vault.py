"""Credentials at rest: AES-GCM keyed by HKDF from the server secret, bound to the record they belong to."""
from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from typing import TYPE_CHECKING

from .errors import Conflict, ConfigError, Unavailable

if TYPE_CHECKING:
    from .store import Store

PREFIX = "v1."
CANARY_SETTING = "secret_canary"
CANARY_TEXT = "bastion secret canary v1"


def derive_key(secret: bytes, purpose: bytes, length: int = 32) -> bytes:
    """A sub-key of the server secret for one purpose (vault, cookies, envelopes, recordings)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"bastion", info=purpose).derive(secret)


class Vault:
    """Seal and open small secrets; the associated data binds a secret to its record and field."""

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(derive_key(secret, b"bastion vault v1"))

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str, context: str) -> str:
        if not sealed.startswith(PREFIX):
            raise Unavailable("stored secret has an unknown format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX):])
            return self._aead.decrypt(raw[:12], raw[12:], context.encode("utf-8")).decode("utf-8")
        except (InvalidTag, ValueError):
            # Wrong server secret or a tampered record: never show the ciphertext.
            raise Unavailable("stored secret cannot be decrypted (was the server secret changed?)") from None


async def check_secret_canary(store: "Store", vault: Vault) -> None:
    """At first start seal a canary into the store; on every later start, refuse a secret that cannot open it.

    Without it a wrong server secret starts normally and fails only when a credential or TOTP secret is opened.
    """
    setting = await store.get_setting(CANARY_SETTING)
    if setting is None:
        try:
            await store.create_setting(CANARY_SETTING, vault.seal(CANARY_TEXT, CANARY_SETTING))
            return
        except Conflict:  # another node stored it first: check against theirs
            setting = await store.get_setting(CANARY_SETTING)
            if setting is None:
                raise
    try:
        ok = vault.open(setting.value, CANARY_SETTING) == CANARY_TEXT
    except Unavailable:
        ok = False
    if not ok:
        raise ConfigError("the server secret is not the one this database was set up with; start with the original "
                          "[server] secret (or <data_dir>/secret.key), or nothing sealed in the database can be read")
