"""Credentials at rest: AES-GCM keyed by HKDF from the server secret, bound to the record they belong to."""
from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import Unavailable

PREFIX = "v1."


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
