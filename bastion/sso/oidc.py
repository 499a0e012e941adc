"""OpenID Connect relying party: discovery, the authorization request (PKCE, state, nonce), the code exchange
and ID token validation against the provider's JWKS (joserfc: signature, issuer, audience, times)."""
from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode, urlparse

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import (BadSignatureError, ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError)
from joserfc.jwk import KeySet
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..errors import Unauthenticated, Unavailable
from .settings import ID_TOKEN_ALGS, OidcProvider, is_loopback

log = logging.getLogger(__name__)
DISCOVERY_TTL = 3600.0  # seconds a provider's metadata is kept
JWKS_MIN_REFRESH = 30.0  # an unknown key id refetches the key set at most this often (key rotation)
MAX_BODY = 1 << 20


class OidcRefused(Unauthenticated):
    """The provider's answer or its ID token is not acceptable (the reason is audited and shown)."""


@dataclass
class AuthRequest:
    """What starting a sign-in produces: where to send the browser, and what to keep until it comes back."""

    url: str
    state: str
    nonce: str
    code_verifier: str


class OidcClient:
    """One provider: metadata and keys cached per instance (one instance per provider, owned by SsoService)."""

    def __init__(self, provider: OidcProvider, *, timeout: float, clock_skew: int) -> None:
        self.provider = provider
        self.timeout = timeout
        self.clock_skew = clock_skew
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    # ---- HTTP --------------------------------------------------------------------------------------------
    def _check_url(self, url: object, what: str) -> str:
        """Provider endpoints must be https (plain http only on the loopback address, for a test provider)."""
        if not isinstance(url, str):
            raise OidcRefused(f"the sign-in provider's {what} is missing")
        parsed = urlparse(url)
        if parsed.scheme == "https" or (parsed.scheme == "http" and is_loopback(parsed.hostname or "")):
            return url
        raise OidcRefused(f"the sign-in provider's {what} is not an https address")

    async def _fetch_json(self, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        request = HTTPRequest(url, connect_timeout=self.timeout, request_timeout=self.timeout, follow_redirects=False,
                              headers={"Accept": "application/json", **kwargs.pop("headers", {})}, **kwargs)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            log.warning("OpenID provider %s: %s failed: %s", self.provider.name, what, exc)
            raise Unavailable(f"the sign-in provider {self.provider.label} cannot be reached; try again later") from None
        if response.code == 599:
            log.warning("OpenID provider %s: %s failed: %s", self.provider.name, what, response.error)
            raise Unavailable(f"the sign-in provider {self.provider.label} cannot be reached; try again later")
        body = response.body or b""
        if len(body) > MAX_BODY:
            raise OidcRefused(f"the sign-in provider's {what} is too large")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if response.code != 200 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            log.warning("OpenID provider %s: %s answered %s %s", self.provider.name, what, response.code,
                        error if isinstance(error, str) else "")
            raise OidcRefused(f"the sign-in provider refused the {what} (HTTP {response.code})")
        return data

    # ---- discovery and keys ---------------------------------------------------------------------------
    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document; its issuer must be exactly the configured one."""
        now = time.monotonic()
        if self._metadata is not None and now - self._metadata_at < DISCOVERY_TTL:
            return self._metadata
        url = self.provider.issuer + "/.well-known/openid-configuration"
        data = await self._fetch_json(url, "discovery document")
        if data.get("issuer") != self.provider.issuer:
            raise OidcRefused("the sign-in provider's discovery document names another issuer")
        for key, what in (("authorization_endpoint", "authorization endpoint"), ("token_endpoint", "token endpoint"),
                          ("jwks_uri", "key set address")):
            self._check_url(data.get(key), what)
        self._metadata, self._metadata_at = data, now
        return data

    async def keys(self, refresh: bool = False) -> KeySet:
        """The provider's signing keys (JWKS), refetched on demand at most every JWKS_MIN_REFRESH seconds."""
        now = time.monotonic()
        if self._keys is not None and (not refresh or now - self._keys_at < JWKS_MIN_REFRESH):
            return self._keys
        meta = await self.metadata()
        data = await self._fetch_json(meta["jwks_uri"], "key set")
        try:
            keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise OidcRefused("the sign-in provider's key set cannot be read") from None
        self._keys, self._keys_at = keys, now
        return keys

    def algorithms(self, meta: dict[str, Any]) -> list[str]:
        """Signature algorithms accepted: what the provider announces, among asymmetric ones (never none/HS*)."""
        announced = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        algs = [a for a in announced if isinstance(a, str) and a in ID_TOKEN_ALGS]
        if not algs:
            raise OidcRefused("the sign-in provider signs ID tokens with no algorithm Bastion accepts")
        return algs

    # ---- the flow ----------------------------------------------------------------------------------------
    async def begin(self, redirect_uri: str) -> AuthRequest:
        """An authorization request with a fresh state, nonce and PKCE verifier."""
        meta = await self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        query = urlencode({
            "response_type": "code", "client_id": self.provider.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(self.provider.scopes), "state": state, "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
        })
        endpoint = meta["authorization_endpoint"]
        return AuthRequest(url=f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", state=state, nonce=nonce,
                           code_verifier=verifier)

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> dict[str, Any]:
        """Trade the code for tokens; return the validated ID token's claims."""
        meta = await self.metadata()
        p = self.provider
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": p.client_id, "code_verifier": code_verifier}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if p.client_secret and p.token_auth_method == "client_secret_post":
            form["client_secret"] = p.client_secret
        elif p.client_secret:  # client_secret_basic (RFC 6749 2.3.1: each part form-urlencoded first)
            pair = f"{quote_plus(p.client_id)}:{quote_plus(p.client_secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        data = await self._fetch_json(meta["token_endpoint"], "token request", method="POST", body=urlencode(form),
                                      headers=headers)
        id_token = data.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcRefused("the sign-in provider sent no ID token")
        return await self.validate_id_token(id_token, nonce)

    async def validate_id_token(self, id_token: str, nonce: str, now: int | None = None) -> dict[str, Any]:
        """Check signature (JWKS), issuer, audience, expiry and issue time (with the bounded skew) and nonce."""
        meta = await self.metadata()
        algs = self.algorithms(meta)
        keys = await self.keys()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=algs)
            except (ValueError, JoseError) as exc:
                if not _unknown_key(exc):
                    raise
                token = jwt.decode(id_token, await self.keys(refresh=True), algorithms=algs)  # the keys rotated
            registry = jwt.JWTClaimsRegistry(
                now=now, leeway=self.clock_skew,
                iss={"essential": True, "value": self.provider.issuer},
                aud={"essential": True, "value": self.provider.client_id},
                sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
                nonce={"essential": True, "value": nonce})
            registry.validate(token.claims)
        except ExpiredTokenError:
            raise OidcRefused("the sign-in provider's ID token has expired") from None
        except BadSignatureError:
            raise OidcRefused("the ID token's signature does not verify with the provider's keys") from None
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = getattr(exc, "claim", "") or str(exc)
            raise OidcRefused(f"the ID token is not valid for this bastion ({_claim_words(claim)})") from None
        except (JoseError, ValueError) as exc:
            log.info("OpenID provider %s: ID token refused: %s", self.provider.name, type(exc).__name__)
            raise OidcRefused("the ID token cannot be verified") from None
        claims = token.claims
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.provider.client_id:
            raise OidcRefused("the ID token is not valid for this bastion (authorized party)")
        return claims


def _unknown_key(exc: Exception) -> bool:
    """Whether decoding failed because no key has the token's key id (the provider rotated its keys)."""
    return "key" in str(exc).lower() and not isinstance(exc, BadSignatureError)


def _claim_words(claim: str) -> str:
    words = {"iss": "wrong issuer", "aud": "wrong audience", "nonce": "nonce does not match the sign-in",
             "iat": "issued in the future", "nbf": "not valid yet", "sub": "no subject", "exp": "no expiry"}
    for key, text in words.items():
        if key in claim:
            return text
    return "a required claim is missing or wrong"
