"""The SSO providers file (bad entries stop start-up with one clear line), mapping changes audited at start-up,
the mapping rules themselves, and `require_mfa` (with its older name `require_totp` still accepted)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.errors import ConfigError
from bastion.sso import evaluate
from bastion.sso.settings import MappingRule, load_providers

GOOD_OIDC = """
[[oidc]]
name = "corp"
issuer = "https://id.example.com"
client_id = "bastion"
client_secret = "s"
[[oidc.map]]
group = "ops"
roles = ["user"]
"""


@pytest.mark.parametrize("text, words", [
    ("[[oidc]]\nname = 'Corp!'\nissuer = 'https://a'\nclient_id = 'b'", "name: must be 1-32"),
    ("[[oidc]]\nname = 'c'\nissuer = 'http://id.example.com'\nclient_id = 'b'", "plain http is allowed only on the loopback"),
    ("[[oidc]]\nname = 'c'\nissuer = 'ftp://x'\nclient_id = 'b'", "issuer: must be an https:// URL"),
    ("[[oidc]]\nname = 'c'\nissuer = 'https://a'", "client_id: is required"),
    ("[[oidc]]\nname = 'c'\nissuer = 'https://a'\nclient_id = 'b'\nscopes = ['profile']", "must include openid"),
    ("[[oidc]]\nname = 'c'\nissuer = 'https://a'\nclient_id = 'b'\nflavour = 1", "flavour: unknown key"),
    ("[[oidc]]\nname = 'c'\nissuer = 'https://a'\nclient_id = 'b'\n[[oidc.map]]\ngroup = 'g'\nroles = ['root']",
     "unknown role 'root'"),
    ("[[oidc]]\nname = 'c'\nissuer = 'https://a'\nclient_id = 'b'\n[[oidc.map]]\ngroup = 'g'", "must give roles, categories"),
    ("[[oidc]]\nname = 'c'\nissuer = 'https://a'\nclient_id = 'b'\n[[oidc.map]]\nclaim = 'dept'\nroles = ['user']",
     "value: is required with claim"),
    ("[[ldap]]\nname = 'd'\nurl = 'ldap://dc.example.com'\nstart_tls = false\nbind_dn = 'x'", "sends passwords in clear"),
    ("[[ldap]]\nname = 'd'\nurl = 'ldap://dc.example.com'\nstart_tls = false\nallow_plain = true\nbind_dn = 'x'",
     "only for a directory on the loopback"),
    ("[[ldap]]\nname = 'd'\nurl = 'http://dc'\nbind_dn = 'x'", "url: must be ldaps://"),
    ("[[ldap]]\nname = 'd'\nurl = 'ldaps://dc'\nbind_dn = 'x'\nuser_filter = '(uid=*)'", "must contain {username}"),
    ("[[ldap]]\nname = 'd'\nurl = 'ldaps://dc'\nbind_dn = 'x'\nca_file = '/nonexistent/ca.pem'", "ca_file: does not exist"),
    ("[saml]\nx = 1", "unknown table [saml]"),
    ("[[oidc]]\nname = 'c'\nissuer = 'https://a'\nclient_id = 'b'\n[[oidc]]\nname = 'c'\nissuer = 'https://a'\nclient_id = 'b'",
     "'c' is used twice"),
    ("[[oidc]\n", "SSO providers file"),
])
def test_bad_providers_file(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "sso.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_providers(str(path))
    assert words in caught.value.message


def test_secrets_are_not_in_reprs(tmp_path: Path) -> None:
    path = tmp_path / "sso.toml"
    path.write_text(GOOD_OIDC.replace('client_secret = "s"', 'client_secret = "very-secret-value"'))
    providers = load_providers(str(path))
    assert providers.oidc[0].client_secret == "very-secret-value"
    assert "very-secret-value" not in repr(providers)


def test_mapping_rules() -> None:
    rules = [MappingRule(group="Ops", roles=("user",), categories=("web",)),
             MappingRule(group="cn=admins,dc=x", roles=("admin",)),
             MappingRule(claim="department", value="security", roles=("auditor",), categories=("db",))]
    assert evaluate(rules, ["ops"]).roles == ("user",)
    both = evaluate(rules, ["OPS", "CN=Admins,DC=x"], {"department": ["security", "it"]})
    assert both.roles == ("admin", "auditor", "user") and both.categories == ("db", "web")
    assert evaluate(rules, ["marketing"], {"department": "sales"}).roles == ()


async def test_mapping_change_is_audited_at_start(make_bastion, tmp_path: Path) -> None:
    path = tmp_path / "sso.toml"
    path.write_text(GOOD_OIDC)
    app = await make_bastion(sso_providers_file=str(path))
    first = (await app.services.store.list_events(action="sso.mapping_changed")).items
    assert len(first) == 1 and first[0].target == "oidc:corp" and first[0].detail["rules"] == [
        {"group": "ops", "roles": ["user"]}]
    await app.stop()
    app = await make_bastion(sso_providers_file=str(path))  # same mapping: nothing new
    assert len((await app.services.store.list_events(action="sso.mapping_changed")).items) == 1
    await app.stop()
    path.write_text(GOOD_OIDC.replace('roles = ["user"]', 'roles = ["admin"]'))
    app = await make_bastion(sso_providers_file=str(path))
    events = (await app.services.store.list_events(action="sso.mapping_changed")).items
    assert len(events) == 2 and events[0].detail["was"] == first[0].detail["now"]
    assert events[0].detail["rules"] == [{"group": "ops", "roles": ["admin"]}]


@pytest.mark.parametrize("option", ["auth_require_mfa", "auth_require_totp"])
async def test_require_mfa_blocks_until_enrolled(make_bastion, option: str) -> None:
    app = await make_bastion(**{option: "true"})
    assert app.config.auth.mfa_required
    c = await app.user("uma")
    resp = await c.get("/api/hosts")
    assert resp.status == 403 and "enrolment is required" in resp.json["error"]
    secret = (await c.post("/api/me/totp")).json["secret"]
    assert (await c.post("/api/me/totp/confirm", {"code": app.services.auth.totp_code(secret)})).status == 200
    assert (await c.get("/api/hosts")).status == 200
    assert (await c.delete("/api/me/totp")).status == 400  # a required second factor cannot be turned off


def test_sso_options_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"BASTION_SSO_REQUIRED_FOR_ROLES": "admin,root"})
    assert "unknown role 'root'" in caught.value.message
    with pytest.raises(ConfigError):
        load_config(None, env={"BASTION_SSO_CLOCK_SKEW": "3600"})  # a skew is bounded
    with pytest.raises(ConfigError):
        load_config(None, env={"BASTION_SSO_PUBLIC_URL": "javascript:alert(1)"})
