"""ID token validation against the provider's published keys, with tokens no honest provider would send:
another issuer, another audience, a bad signature, expired, issued in the future, a wrong nonce, `alg: none`.
The provider here is a small Tornado app on the loop serving discovery and the JWKS over real HTTP; the tokens
are signed with joserfc by the test (the client under test fetches and checks like with any provider)."""
from __future__ import annotations

import base64
import json
import time
from typing import Any, AsyncIterator

import pytest
import tornado.netutil
import tornado.web
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from tornado.httpserver import HTTPServer

from bastion.errors import Unauthenticated
from bastion.sso.oidc import OidcClient
from bastion.sso.settings import OidcProvider

CLIENT_ID = "bastion-test"
NONCE = "n-0123456789"


class Published:
    """What the test provider publishes: its issuer (with the real port) and its key set."""

    def __init__(self) -> None:
        self.issuer = ""
        self.keys = KeySet([RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})])


class Discovery(tornado.web.RequestHandler):
    def initialize(self, published: Published) -> None:
        self.published = published

    def get(self) -> None:
        i = self.published.issuer
        self.write({"issuer": i, "authorization_endpoint": i + "/authorize", "token_endpoint": i + "/token",
                    "jwks_uri": i + "/jwks", "id_token_signing_alg_values_supported": ["RS256", "ES256"]})


class Jwks(tornado.web.RequestHandler):
    def initialize(self, published: Published) -> None:
        self.published = published

    def get(self) -> None:
        self.write(self.published.keys.as_dict(private=False))


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Published, OidcClient]]:
    published = Published()
    app = tornado.web.Application([(r"/.well-known/openid-configuration", Discovery, {"published": published}),
                                   (r"/jwks", Jwks, {"published": published})])
    server = HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    published.issuer = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    config = OidcProvider(name="t", label="Test", issuer=published.issuer, client_id=CLIENT_ID)
    try:
        yield published, OidcClient(config, timeout=5, clock_skew=60)
    finally:
        server.stop()
        await server.close_all_connections()


def claims(published: Published, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    out = {"iss": published.issuer, "aud": CLIENT_ID, "sub": "s-1", "iat": now, "exp": now + 300, "nonce": NONCE}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def sign(published: Published, body: dict[str, Any], key: Any = None, alg: str = "RS256") -> str:
    key = key or published.keys.keys[0]
    return jwt.encode({"alg": alg, "kid": key.kid}, body, key)


async def refused(client: OidcClient, token: str, nonce: str = NONCE) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await client.validate_id_token(token, nonce)
    return caught.value.message


async def test_a_good_token_passes(provider) -> None:
    published, client = provider
    got = await client.validate_id_token(sign(published, claims(published)), NONCE)
    assert got["sub"] == "s-1"


async def test_wrong_issuer(provider) -> None:
    published, client = provider
    assert "wrong issuer" in await refused(client, sign(published, claims(published, iss="http://127.0.0.1:1")))


async def test_wrong_audience(provider) -> None:
    published, client = provider
    assert "wrong audience" in await refused(client, sign(published, claims(published, aud="someone-else")))


async def test_bad_signature_same_key_id(provider) -> None:
    published, client = provider
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # the provider's key id, not its key
    assert "signature" in await refused(client, sign(published, claims(published), key=impostor))


async def test_tampered_payload(provider) -> None:
    published, client = provider
    head, body, sig = sign(published, claims(published)).split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged["sub"] = "admin"
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert "signature" in await refused(client, f"{head}.{body}.{sig}")


async def test_alg_none_is_refused(provider) -> None:
    published, client = provider
    head = base64.urlsafe_b64encode(b'{"alg":"none","kid":"k1"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims(published)).encode()).rstrip(b"=").decode()
    assert "cannot be verified" in await refused(client, f"{head}.{body}.")


async def test_expiry_with_bounded_skew(provider) -> None:
    published, client = provider
    now = int(time.time())
    # 30 s past expiry is inside the 60 s skew; 90 s is not
    assert await client.validate_id_token(sign(published, claims(published, exp=now - 30)), NONCE)
    assert "expired" in await refused(client, sign(published, claims(published, exp=now - 90)))


async def test_issued_in_the_future(provider) -> None:
    published, client = provider
    future = int(time.time()) + 600
    message = await refused(client, sign(published, claims(published, iat=future, exp=future + 300)))
    assert "future" in message


async def test_nonce_must_match_the_sign_in(provider) -> None:
    published, client = provider
    assert "nonce" in await refused(client, sign(published, claims(published)), nonce="another-sign-in")
    assert "nonce" in await refused(client, sign(published, claims(published, nonce=None)))


async def test_missing_subject_or_expiry(provider) -> None:
    published, client = provider
    assert "not valid" in await refused(client, sign(published, claims(published, sub=None)))
    assert "not valid" in await refused(client, sign(published, claims(published, exp=None)))


async def test_rotated_keys_are_fetched_again(provider) -> None:
    published, client = provider
    await client.validate_id_token(sign(published, claims(published)), NONCE)  # caches k1
    new = ECKey.generate_key("P-256", parameters={"kid": "k2", "use": "sig", "alg": "ES256"})
    published.keys = KeySet([new])
    client._keys_at -= 3600  # noqa: SLF001 - the cached set is older than the refresh floor
    assert await client.validate_id_token(sign(published, claims(published), key=new, alg="ES256"), NONCE)


async def test_discovery_naming_another_issuer_is_refused(provider) -> None:
    published, _ = provider
    client = OidcClient(OidcProvider(name="t", label="Test", issuer=published.issuer.replace("127.0.0.1", "localhost"),
                                     client_id=CLIENT_ID), timeout=5, clock_skew=60)
    with pytest.raises(Unauthenticated) as caught:
        await client.begin("http://127.0.0.1/cb")
    assert "another issuer" in caught.value.message
