"""Task module registry: finds `modules/Mid_<id>.py` by scanning the folder, reads each file's metadata by
parsing it (never executing it in the web process), validates the parameter schema, and keeps the
`modules` collection in step as files are added, changed or removed (polling; no restart needed).

A file that cannot be read becomes an entry in state `broken` with its error; nothing else is affected.
Module ids are digits only; a request's id is checked against that and looked up in the registry, never
turned into a path or an import string.
"""
from __future__ import annotations

import ast
import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Invalid, NotFound
from .store import ModuleState, Store
from .tasks import stop_tasks

log = logging.getLogger(__name__)
MODULE_FILE = re.compile(r"^Mid_([0-9]{1,9})\.py$")
MODULE_ID = re.compile(r"^[0-9]{1,9}$")  # ASCII digits only (str.isdigit() accepts full-width digits)
PARAM_NAME = re.compile(r"^sys_param_([1-9][0-9]?)$")
PARAM_TYPES = ("str", "int", "choice", "secret")
PLATFORMS = ("ssh", "ansible", "salt")
HELPERS = {"ssh": "ssh", "ansible": "ansible", "salt": "salt"}  # platform -> the Modulehandle helper it uses
FIRST_ID = 1001
MAX_FILE = 256 * 1024

TEMPLATE = '''"""{name}: one line on what this module does."""
import bastion


class Modulehandle(bastion.Modulehandle):
    name = "{name}"
    description = "What it does and what it changes."
    platform = "ssh"
    category = "System"
    timeout = 60
    params = [
        {{"name": "sys_param_1", "label": "Lines", "type": "int", "required": True, "min": 1, "max": 1000,
         "default": 50, "help": "How many lines to show"}},
    ]

    async def run(self):
        return await self.ssh(["tail", "-n", str(self.params["sys_param_1"]), "/var/log/syslog"])
'''


@dataclass(frozen=True)
class ModuleFile:
    """What the registry learned from one file, without running it."""

    id: str
    path: Path
    digest: str
    meta: dict[str, Any] | None
    error: str


def check_module_id(value: Any) -> str:
    """A module id from a request: ASCII digits only."""
    if not isinstance(value, str) or not MODULE_ID.match(value):
        raise Invalid("module id must be 1-9 ASCII digits")
    return value


def _check_params(params: Any) -> list[dict[str, Any]]:
    if not isinstance(params, list):
        raise ValueError("params must be a list of dicts")
    seen: set[str] = set()
    out = []
    for i, p in enumerate(params, start=1):
        if not isinstance(p, dict):
            raise ValueError(f"params[{i}] must be a dict")
        name = p.get("name")
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            raise ValueError(f"params[{i}]: name must be sys_param_<n>")
        if name in seen:
            raise ValueError(f"params: {name} is declared twice")
        seen.add(name)
        kind = p.get("type", "str")
        if kind not in PARAM_TYPES:
            raise ValueError(f"{name}: type must be one of {', '.join(PARAM_TYPES)}")
        unknown = set(p) - {"name", "label", "type", "required", "pattern", "choices", "help", "default", "min", "max",
                            "max_length"}
        if unknown:
            raise ValueError(f"{name}: unknown key {sorted(unknown)[0]!r}")
        if "pattern" in p:
            if not isinstance(p["pattern"], str):
                raise ValueError(f"{name}: pattern must be a string")
            try:
                re.compile(p["pattern"])
            except re.error as exc:
                raise ValueError(f"{name}: pattern does not compile: {exc}") from None
        if kind == "choice":
            choices = p.get("choices")
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
                raise ValueError(f"{name}: a choice needs a non-empty list of string choices")
        for key in ("min", "max", "max_length"):
            if key in p and (isinstance(p[key], bool) or not isinstance(p[key], int)):
                raise ValueError(f"{name}: {key} must be an integer")
        out.append({"name": name, "label": str(p.get("label", name))[:80], "type": kind,
                    "required": bool(p.get("required", False)), "pattern": p.get("pattern", ""),
                    "choices": list(p.get("choices", [])), "help": str(p.get("help", ""))[:300],
                    "default": p.get("default"), "min": p.get("min"), "max": p.get("max"),
                    "max_length": p.get("max_length", 256)})
    return out


def parse_module(path: Path) -> dict[str, Any]:
    """Read a module's metadata from its source (ast), raising ValueError with a clear message."""
    source = path.read_bytes()
    if len(source) > MAX_FILE:
        raise ValueError(f"file is larger than {MAX_FILE} bytes")
    try:
        tree = ast.parse(source, filename=path.name)
    except SyntaxError as exc:
        raise ValueError(f"syntax error on line {exc.lineno}: {exc.msg}") from None
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Modulehandle"), None)
    if cls is None:
        raise ValueError("no class Modulehandle")
    attrs: dict[str, Any] = {}
    for node in cls.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            key = node.targets[0].id
            if key in ("name", "description", "platform", "category", "params", "timeout"):
                try:
                    attrs[key] = ast.literal_eval(node.value)
                except ValueError:
                    raise ValueError(f"{key} must be a literal value") from None
    if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "run" for n in cls.body):
        raise ValueError("Modulehandle has no run() method")
    name = attrs.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 80:
        raise ValueError("name must be a non-empty string of at most 80 characters")
    platform = attrs.get("platform", "ssh")
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}")
    # a module written for one platform is refused on another: calling another platform's helper is an error here,
    # before anything runs (the helpers refuse it again at run time)
    for node in ast.walk(cls):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "self" and node.func.attr in HELPERS.values()
                and node.func.attr != HELPERS[platform]):
            raise ValueError(f"the module is declared for the {platform} platform but calls self.{node.func.attr}() "
                             f"of the {node.func.attr} platform (line {node.lineno})")
    timeout = attrs.get("timeout", 60)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 86400:
        raise ValueError("timeout must be an integer number of seconds (1-86400)")
    return {"name": name.strip(), "description": str(attrs.get("description", ""))[:1000],
            "platform": platform, "category": str(attrs.get("category", ""))[:64],
            "params": _check_params(attrs.get("params", [])), "timeout": timeout}


def scan(folder: Path) -> dict[str, ModuleFile]:
    """Every Mid_<id>.py in the folder with its metadata or error."""
    found: dict[str, ModuleFile] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        m = MODULE_FILE.match(path.name)
        if not m or not path.is_file():
            continue
        module_id = str(int(m.group(1)))
        if f"Mid_{module_id}.py" != path.name:
            continue  # leading zeros would make two files claim one id
        try:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            found[module_id] = ModuleFile(module_id, path, digest, parse_module(path), "")
        except (OSError, ValueError) as exc:
            found[module_id] = ModuleFile(module_id, path, "", None, str(exc) or type(exc).__name__)
    return found


def validate_params(schema: list[dict[str, Any]], values: Any) -> dict[str, Any]:
    """Check request values against a module's schema; raises Invalid naming the parameter."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise Invalid("params must be an object")
    declared = {p["name"]: p for p in schema}
    for name in values:
        if name not in declared:
            raise Invalid(f"unknown parameter {str(name)[:40]!r}")
    out: dict[str, Any] = {}
    for name, p in declared.items():
        value = values.get(name, p.get("default"))
        label = f"{name} ({p['label']})"
        if value is None or value == "":
            if p["required"]:
                raise Invalid(f"{label} is required")
            continue
        if p["type"] == "int":
            if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,12}", value):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise Invalid(f"{label} must be an integer")
            if p.get("min") is not None and value < p["min"] or p.get("max") is not None and value > p["max"]:
                raise Invalid(f"{label} must be between {p.get('min')} and {p.get('max')}")
        else:
            if not isinstance(value, str):
                raise Invalid(f"{label} must be a string")
            if len(value) > (p.get("max_length") or 256):
                raise Invalid(f"{label} must be at most {p.get('max_length') or 256} characters")
            if any(ord(c) < 32 and c not in "\t" for c in value):
                raise Invalid(f"{label} must not contain control characters")
            if p["type"] == "choice" and value not in p["choices"]:
                raise Invalid(f"{label} must be one of: {', '.join(p['choices'])}")
            if p.get("pattern") and not re.fullmatch(p["pattern"], value):
                # the module's own help says what is expected; a regular expression says nothing to most users
                raise Invalid(f"{label}: {p['help']}" if p.get("help") else f"{label} is not in the expected form")
        out[name] = value
    return out


def mask_params(schema: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    secret = {p["name"] for p in schema if p["type"] == "secret"}
    return {k: ("********" if k in secret else v) for k, v in values.items()}


class ModuleRegistry:
    """Keeps the store's module entries in step with the modules folder."""

    def __init__(self, folder: Path, store: Store, interval: float = 1.0) -> None:
        self.folder = folder
        self.store = store
        self.interval = interval
        self._files: dict[str, ModuleFile] = {}
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def refresh(self) -> int:
        """Rescan the folder; update the store for new, changed, broken and removed files. Returns changes."""
        async with self._lock:  # one scan at a time: an older scan must never overwrite a newer one
            return await self._refresh()

    async def _refresh(self) -> int:
        files = await asyncio.get_running_loop().run_in_executor(None, scan, self.folder)
        changes = 0
        known = {m.id: m for m in await self.store.list_modules()}
        for module_id, f in files.items():
            entry = known.get(module_id)
            if entry is not None and entry.digest == (f.digest or f.error) and entry.state != "missing":
                continue
            entry = entry or ModuleState(id=module_id)
            if f.meta is not None:
                for key, value in f.meta.items():
                    setattr(entry, key, value)
                entry.error = ""
                entry.state = "enabled" if entry.enabled else "disabled"
                entry.digest = f.digest
            else:
                entry.state, entry.error, entry.digest = "broken", f.error, f.error
                entry.name = entry.name or f"Mid_{module_id}"
                log.warning("module Mid_%s.py is broken: %s", module_id, f.error)
            await self.store.put_module(entry)
            changes += 1
        for module_id, entry in known.items():
            if module_id not in files and entry.state != "missing":
                entry.state, entry.error, entry.digest = "missing", "the file was removed", ""
                await self.store.put_module(entry)
                changes += 1
        self._files = files
        return changes

    def path_of(self, module_id: str) -> Path:
        """The file of a loaded, readable module (from the last scan, not from the request)."""
        f = self._files.get(module_id)
        if f is None or f.meta is None:
            raise NotFound(f"module {module_id} not found")
        return f.path

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("module registry refresh failed")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            # awaited (bounded): a poller whose cancellation was lost would go on using the store after it closes
            await stop_tasks([self._task], 5.0, "module folder pollers")
            self._task = None

    async def next_free_id(self) -> str:
        used = {int(m.id) for m in await self.store.list_modules()} | {int(i) for i in self._files}
        candidate = FIRST_ID
        while candidate in used:
            candidate += 1
        return str(candidate)
