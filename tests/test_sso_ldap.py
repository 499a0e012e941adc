"""LDAP sign-in against Debian's slapd, started per test in a temporary directory with its own CA (StartTLS
with certificate checks): groups mapped to roles and grants, a wrong password, a disabled entry, a user removed
while their session runs, the server going away or freezing (a clear error, no hang), LDAP injection."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sso_servers import READER_DN, READER_PW, SUFFIX, Slapd, make_ca  # noqa: E402
from waiting import wait_until  # noqa: E402

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not Path("/usr/sbin/slapd").exists(), reason="slapd missing: run scripts/system-deps.sh")]

USERS = {"alice": {"password": "alice-password-1"}, "bob": {"password": "bob-password-1"},
         "carol": {"password": "carol-password-1", "employeeType": "disabled"},
         "dave": {"password": "dave-password-1"}}
GROUPS = {"ops": ["alice", "carol", "dave"], "auditors": ["bob"], "admins": ["nobody-here"]}


@pytest.fixture
def slapd(tmp_path: Path) -> Any:
    server = Slapd(tmp_path / "ldap", make_ca(tmp_path / "ca"))
    server.seed(USERS, GROUPS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def providers_file(tmp_path: Path, slapd: Slapd, *, ca_file: Path | None = None, ldaps: bool = False) -> Path:
    path = tmp_path / "sso.toml"
    path.write_text(f"""
[[ldap]]
name = "corp"
label = "Corp directory"
url = "{slapd.ldaps_url if ldaps else slapd.url}"
start_tls = {"false" if ldaps else "true"}
ca_file = "{ca_file or slapd.ca.ca_file}"
bind_dn = "{READER_DN}"
bind_password = "{READER_PW}"
user_base = "ou=people,{SUFFIX}"
user_filter = "(&(objectClass=inetOrgPerson)(uid={{username}}))"
group_base = "ou=groups,{SUFFIX}"
enabled_filter = "(!(employeeType=disabled))"

[[ldap.map]]
group = "ops"
roles = ["user"]
categories = ["web"]

[[ldap.map]]
group = "cn=auditors,ou=groups,{SUFFIX}"
roles = ["auditor"]
""")
    return path


async def directory_login(app: Any, username: str, password: str) -> Any:
    return await app.client().post("/api/login/directory", {"directory": "corp", "username": username,
                                                             "password": password})


async def test_groups_map_to_roles_and_grants(make_bastion, slapd, tmp_path) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, slapd)))
    admin = await app.admin()
    web = (await admin.post("/api/apps", {"name": "web"})).json["id"]
    response = await directory_login(app, "alice", "alice-password-1")
    assert response.status == 200, response
    store = app.services.store
    alice = await store.get_user_by_name("alice")
    assert alice.roles == ["user"] and alice.sso_provider == "ldap:corp"
    assert alice.sso_subject == f"uid=alice,ou=people,{SUFFIX}"
    assert [(g.app_id, g.source) for g in await store.grants_of_user(alice.id)] == [(web, "sso:ldap:corp")]
    response = await directory_login(app, "bob", "bob-password-1")  # matched by the group's DN
    assert response.status == 200 and response.json["user"]["roles"] == ["auditor"]

    # a group change in the directory applies at the next login
    conn = slapd.admin()
    assert conn.modify(f"cn=auditors,ou=groups,{SUFFIX}", {"member": [("MODIFY_ADD", [f"uid=alice,ou=people,{SUFFIX}"])]})
    conn.unbind()
    assert (await directory_login(app, "alice", "alice-password-1")).status == 200
    assert (await store.get_user_by_name("alice")).roles == ["auditor", "user"]
    events = (await store.list_events(action="login.ok")).items
    assert events[0].detail["via"] == "ldap:corp"


async def test_wrong_password_unknown_user_and_disabled_entry(make_bastion, slapd, tmp_path) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, slapd)))
    for username, password, words in (("alice", "not-her-password", "wrong username or password"),
                                      ("zed", "whatever-password", "wrong username or password"),
                                      ("carol", "carol-password-1", "disabled in the directory"),
                                      ("alice", "", "must not be empty")):
        response = await directory_login(app, username, password)
        assert response.status in (400, 401), response
        assert words in response.json["error"], response
    assert await app.services.store.get_user_by_name("carol") is None
    failed = [e.detail["why"] for e in (await app.services.store.list_events(action="sso.failed")).items]
    assert "this account is disabled in the directory" in failed


@pytest.mark.parametrize("username", ["*", "alice)(uid=*", "*)(|(uid=*", "alice*", "al\\2a", "alice\x00", "(uid=*)"])
async def test_ldap_injection_in_username(make_bastion, slapd, tmp_path, username) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, slapd)))
    response = await directory_login(app, username, "alice-password-1")
    # refused before the directory is asked: 401 like a wrong password (400 for a control character in the body)
    assert (response.status, response.json["error"]) in ((401, "wrong username or password"),
                                                         (400, "username must not contain NUL bytes")), response
    assert (await app.services.store.count_users()) == 1  # only the admin: alice's password did not log anyone in


async def test_filter_escaping_in_the_client(slapd, tmp_path) -> None:
    """Below the username check: the client escapes what it puts in a filter (a '*' finds nobody)."""
    from concurrent.futures import ThreadPoolExecutor
    from bastion.sso.ldap import LdapClient
    from bastion.sso.settings import load_providers
    directory = load_providers(str(providers_file(tmp_path, slapd))).ldap[0]
    with ThreadPoolExecutor(1) as pool:
        client = LdapClient(directory, pool, 5)
        assert await client.lookup("alice") is not None
        assert await client.lookup("*") is None
        assert await client.lookup("alice)(uid=*") is None


async def test_ldaps_with_certificate_check(make_bastion, slapd, tmp_path) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, slapd, ldaps=True)))
    response = await directory_login(app, "bob", "bob-password-1")
    assert response.status == 200 and response.json["user"]["roles"] == ["auditor"], response
    # the same server checked against another CA: refused before any password is sent
    from concurrent.futures import ThreadPoolExecutor
    from bastion.errors import Unavailable
    from bastion.sso.ldap import LdapClient
    from bastion.sso.settings import load_providers
    other = make_ca(tmp_path / "other-ca", name="Someone else's CA")
    (tmp_path / "second").mkdir()
    directory = load_providers(str(providers_file(tmp_path / "second", slapd, ldaps=True, ca_file=other.ca_file))).ldap[0]
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(Unavailable, match="certificate"):
            await LdapClient(directory, pool, 5).authenticate("bob", "bob-password-1")


async def test_untrusted_certificate_is_refused(make_bastion, slapd, tmp_path) -> None:
    other = make_ca(tmp_path / "other-ca", name="Someone else's CA")
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, slapd, ca_file=other.ca_file)))
    response = await directory_login(app, "alice", "alice-password-1")
    assert response.status == 503 and "certificate" in response.json["error"], response


async def test_server_gone_or_frozen_is_a_clear_error_not_a_hang(make_bastion, slapd, tmp_path) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, slapd)), sso_http_timeout="2")
    slapd.proc.send_signal(signal.SIGSTOP)  # accepts connections (kernel backlog), answers nothing
    started = time.monotonic()
    response = await directory_login(app, "alice", "alice-password-1")
    frozen_for = time.monotonic() - started
    assert response.status == 503 and "did not answer in time" in response.json["error"], response
    assert frozen_for < 2 * 4 + 1 + 5  # bounded by the timeouts (the loop's own bound is 4 × timeout + 1)
    assert (await app.client().get("/healthz")).status in (200, 503)  # the loop kept serving meanwhile
    slapd.stop()
    response = await directory_login(app, "alice", "alice-password-1")
    assert response.status == 503 and "cannot be reached" in response.json["error"], response


async def test_user_removed_or_disabled_loses_access_and_live_session_ends(make_bastion, slapd, sshd, tmp_path) -> None:
    import scenario
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, slapd)),
                             sso_directory_recheck_interval="0.5")
    admin = await app.admin()
    ids = await scenario.seed_sshd(admin, sshd, "web1", category="web")  # the mapped category
    dave = app.client()
    response = await dave.post("/api/login/directory", {"directory": "corp", "username": "dave",
                                                        "password": "dave-password-1"})
    assert response.status == 200, response
    term = await scenario.open_terminal(dave, ids["host_id"])
    # the directory disables dave while his session runs
    conn = slapd.admin()
    assert conn.modify(f"uid=dave,ou=people,{SUFFIX}", {"employeeType": [("MODIFY_REPLACE", ["disabled"])]})
    conn.unbind()
    await term.wait_closed(timeout=15)
    store = app.services.store
    user = await wait_until(lambda: _disabled(store, "dave"), 10, what="dave disabled")
    assert user.disabled
    events = (await store.list_events(action="sso.deprovisioned")).items
    assert events and events[0].target == "dave" and events[0].detail["why"] == "disabled in the directory"
    # and the next login is refused
    response = await directory_login(app, "dave", "dave-password-1")
    assert response.status in (401, 403)

    # removed from the directory: alice's next login is refused too
    assert (await directory_login(app, "alice", "alice-password-1")).status == 200
    conn = slapd.admin()
    assert conn.delete(f"uid=alice,ou=people,{SUFFIX}")
    conn.unbind()
    assert (await directory_login(app, "alice", "alice-password-1")).status == 401


async def _disabled(store: Any, name: str) -> Any:
    user = await store.get_user_by_name(name)
    return user if user and user.disabled else None


async def test_login_page_directory_choice(make_bastion, slapd, pages, tmp_path) -> None:
    """The login page's Account choice sends the password to the directory, not to the local accounts."""
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, slapd)))
    page = await pages.page()
    await page.goto(app.base_url + "/login")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", "alice-password-1")
    await page.select_option("select[name=via]", "corp")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(app.base_url + "/")
    assert (await page.inner_text(".who a")).strip() == "alice"
    assert (await app.services.store.get_user_by_name("alice")).sso_provider == "ldap:corp"
