"""Module runs: every request (web form, API, CLI) becomes a sealed command envelope, is opened (bad tag,
unknown key, stale, replay, malformed each refused with its own error), authorized, validated and handed
to the executor."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from . import protocol
from .auth import token_expires_at, token_scopes
from .commands import CommandFilter
from .errors import Conflict, Forbidden, Invalid, NotFound
from .inventory import HOST_NOT_FOUND
from .modules import check_module_id, mask_params, validate_params
from .store import Host, ModuleState, Run, User
from .validation import ID_RE

if TYPE_CHECKING:
    from .audit import Audit
    from .config import Config
    from .executor import Executor
    from .hub import SessionHub
    from .inventory import Inventory
    from .modules import ModuleRegistry
    from .review import CommandReviews
    from .store import Store
    from .vault import Vault

log = logging.getLogger(__name__)
MAX_HOSTS = 1000


class RunService:
    """Opens envelopes, authorizes and starts module runs."""

    def __init__(self, config: "Config", store: "Store", vault: "Vault", audit: "Audit", inventory: "Inventory",
                 registry: "ModuleRegistry", executor: "Executor", hub: "SessionHub") -> None:
        self.config = config
        self.store = store
        self.vault = vault
        self.audit = audit
        self.inventory = inventory
        self.registry = registry
        self.executor = executor
        self.hub = hub
        hub.serve("cancel_run", self._cancel_for_another_node)
        self._server_key = protocol.server_envelope_key(config.secret)
        self.reviews: "CommandReviews | None" = None  # set by the composition root (four eyes)

    def seal_for_web(self, user: User, module_id: str, host_ids: list[str], params: dict[str, Any]) -> str:
        """A web-form run, sealed with the server key like any other request."""
        return protocol.seal(self._server_key, "server", protocol.new_payload(module_id, host_ids, params, user.username))

    async def _key_for(self, kid: str, user: User) -> bytes | None:
        if kid == "server":
            return self._server_key
        if kid.startswith("tok:"):
            token = await self.store.get_token(kid[4:]) if ID_RE.match(kid[4:]) else None
            if token is None or token.user_id != user.id or not token.sealed_envelope_key:
                return None
            # an expired token, or one without the runs scope, cannot seal runs either
            if "runs" not in token_scopes(token) or token_expires_at(token, self.config) <= time.time():
                return None
            return bytes.fromhex(self.vault.open(token.sealed_envelope_key, f"envelope-key:{token.id}"))
        return None

    async def accept(self, envelope: Any, user: User, *, via: str, address: str = "", rerun_of: str = "") -> Run:
        """Open, check and start a run; raises a BastionError and runs nothing when anything is wrong."""
        try:
            return await self._accept(envelope, user, via=via, rerun_of=rerun_of)
        except (Invalid, Forbidden, NotFound, Conflict) as exc:
            await self.audit.record("module.run_refused", actor=user.username, address=address, ok=False,
                                             why=exc.message[:300], reason_code=exc.code, via=via)
            raise

    async def _accept(self, envelope: Any, user: User, *, via: str, rerun_of: str = "") -> Run:
        kid = envelope.split(".")[1] if isinstance(envelope, str) and envelope.count(".") == 2 else ""
        key = await self._key_for(kid, user) if protocol._KID_RE.match(kid or "-") else None
        payload = protocol.open_envelope(envelope, lambda k: key if k == kid else None)
        if payload["user"] != user.username:
            raise Forbidden("the envelope was sealed for another user")
        if not await self.store.remember_envelope(payload["jti"], payload["iat"] + protocol.MAX_AGE + protocol.MAX_SKEW):
            raise Conflict("replayed envelope: this command was already accepted once", code="envelope_replay")
        module_id = check_module_id(payload["module_id"])
        module = await self.store.get_module(module_id)
        if module is None or module.state == "missing":
            raise NotFound(f"module {module_id} not found")
        if module.state == "broken":
            raise Conflict(f"module {module_id} is broken: {module.error}")
        if not module.enabled or module.state != "enabled":
            raise Conflict(f"module {module_id} is disabled")
        if module.allowed_roles and not any(r in user.roles for r in module.allowed_roles):
            raise Forbidden(f"module {module_id} is not available to your role")
        hosts = await self._hosts(payload["hosts"], user, module)
        params = validate_params(module.params, payload["params"])
        await self._check_params(params, user, hosts, module)
        path = str(self.registry.path_of(module_id))
        run = Run(module_id=module_id, module_name=module.name, user_id=user.id, username=user.username,
                  host_ids=[h.id for h in hosts], host_names=[h.name for h in hosts],
                  params=mask_params(module.params, params), via=via, envelope_id=payload["jti"], rerun_of=rerun_of,
                  node=self.config.node_id)
        await self.store.create_run(run)
        await self.audit.record("module.run_started", actor=user.username, target=module.name, run=run.id,
                                         hosts=run.host_names[:50], params=run.params, via=via)
        self.executor.submit(run, module, path, hosts, params)
        return run

    async def cancel(self, run: Run, user: User, *, address: str = "") -> Run:
        """Cancel a queued or running run (its owner or an admin): the worker and its remote commands end."""
        if run.user_id != user.id and "admin" not in user.roles:
            raise Forbidden("only the user who started a run, or an admin, may cancel it")
        if run.status not in ("queued", "running"):
            raise Conflict(f"the run has already ended ({run.status})")
        if not self._cancel_here(run.id, user.username):
            current = await self.store.get_run(run.id) or run  # it may have ended since it was read
            if current.status not in ("queued", "running"):
                raise Conflict(f"the run has already ended ({current.status})")
            if not current.node or current.node == self.config.node_id:
                raise Conflict("the run is not executing on this bastion node: cancel it on the node that started it")
            await self.hub.ask(current.node, "cancel_run", {"run": run.id, "by": user.username},  # its node kills it
                               unreachable=f"the run is executing on node {current.node}, which this node cannot reach: "
                                           "cancel it there", gone="the run may have ended with it")
        await self.audit.record("module.run_cancelled", actor=user.username, target=run.module_name, run=run.id,
                                address=address, node=run.node or self.config.node_id)
        return self.executor.live_run(run.id) or await self.store.get_run(run.id) or run

    def _cancel_here(self, run_id: str, by: str) -> bool:
        """Cancel a run executing on this node; False when it does not execute here."""
        outcome = self.executor.cancel(run_id, by)
        if outcome == "already":
            raise Conflict("the run is already being cancelled")
        return outcome == "cancelled"

    async def _cancel_for_another_node(self, request: dict[str, Any]) -> dict[str, Any]:
        """A cancel another node received for a run of this node (that node checked who may cancel it)."""
        if not self._cancel_here(str(request["run"]), str(request.get("by", ""))):
            raise NotFound("the run is not executing on its node")
        return {}

    async def rerun_failed(self, run: Run, user: User, params: Any, *, via: str, address: str = "") -> Run:
        """A new run of the same module on the hosts that did not succeed in `run`, linked to it."""
        if run.status in ("queued", "running"):
            raise Conflict("the run is still going: wait for it to end or cancel it first")
        failed = [hid for hid, name in zip(run.host_ids, run.host_names) if not (run.results.get(name) or {}).get("ok")]
        if not failed:
            raise Conflict("every host succeeded in this run: there is nothing to re-run")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise Invalid("params must be an object")
        module = await self.store.get_module(check_module_id(run.module_id))
        secret = {p["name"]: p["label"] for p in (module.params if module else []) if p["type"] == "secret"}
        # the run kept its secret parameters masked: those must be given again, the others are taken as they were
        merged = {k: v for k, v in run.params.items() if k not in secret}
        merged.update(params)
        for name, label in secret.items():
            if name in run.params and name not in merged:
                raise Invalid(f"the run had a secret parameter ({label}): give it again to re-run")
        envelope = self.seal_for_web(user, run.module_id, failed, merged)
        return await self.accept(envelope, user, via=via, address=address, rerun_of=run.id)

    async def _hosts(self, host_ids: list[Any], user: User, module: ModuleState) -> list[Host]:
        if not host_ids:
            raise Invalid("choose at least one host")
        if len(host_ids) > MAX_HOSTS:
            raise Invalid(f"at most {MAX_HOSTS} hosts per run")
        # type-check every id before using it (a dict or list here is a 400, never a 500)
        if not all(isinstance(h, str) and ID_RE.match(h) for h in host_ids):
            raise Invalid("host ids must be id strings")
        hosts: list[Host] = []
        # a fleet: one read of the inventory and one of the grants, not two queries per host
        wanted = list(dict.fromkeys(host_ids))
        known = {h.id: h for h in await self.store.all_hosts()} if len(wanted) > 20 else None
        for host_id in wanted:
            host = known.get(host_id) if known is not None else await self.store.get_host(host_id)
            if host is None:
                raise NotFound(HOST_NOT_FOUND)
            hosts.append(host)
        # unknown and not granted read the same (checked before anything else), and the refusal never names the host
        if not await self.inventory.may_open_all(user, hosts):
            raise NotFound(HOST_NOT_FOUND)
        if module.allowed_apps and any(host.app_id not in module.allowed_apps for host in hosts):
            raise Forbidden(f"module {module.id} may not run on one of the chosen hosts (its category is not allowed)")
        return hosts

    async def _check_params(self, params: dict[str, Any], user: User, hosts: list[Host], module: ModuleState) -> None:
        """The terminal's command filter also checks module parameters; a `review` rule holds the request until
        an approver decides (bastion.review), nobody answering in time refuses it."""
        rules = CommandFilter(await self.store.list_rules())
        held: dict[str, str] = {}  # parameter value -> rule: each value is reviewed once, whatever the hosts
        for name, value in params.items():
            for host in hosts:
                verdict = rules.check(str(value), user, host)
                if verdict.action == "deny":
                    raise Forbidden(f"{name} is refused by the command filter ({verdict.rule})")
                if verdict.action == "review":
                    held.setdefault(str(value), verdict.rule)
        for value, rule in held.items():
            if self.reviews is None:
                raise Forbidden(f"a parameter needs an approver's review ({rule}) and reviews are unavailable")
            decided = await self.reviews.hold(command=value, rule=rule, user_id=user.id, username=user.username,
                                              by=user.username, target=f"module {module.name}")
            if decided.status != "approved":
                raise Forbidden(f"a parameter was not approved ({rule}): {decided.outcome}")
