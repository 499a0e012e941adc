"""Every audit event the code emits is registered in bastion/audit.py's catalogue (read from the source)."""
from __future__ import annotations

import ast
from pathlib import Path

from bastion.audit import ACTIONS

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "bastion").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")])


AUDIT_CALLS = ("record", "emit", "record_limited")  # awaited, journaled, rate-limited


def _is_audit_record(call: ast.Call) -> bool:
    """`audit.record(...)`, `self.audit.emit(...)`, `self._audit.emit(...)`, `services.audit.record_limited(...)`."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr in AUDIT_CALLS):
        return False
    owner = func.value
    names = ("audit", "_audit")
    return (isinstance(owner, ast.Name) and owner.id in names) or (isinstance(owner, ast.Attribute) and owner.attr in names)


def _names(node: ast.expr) -> list[str] | None:
    """The event names an argument can take: a string literal, or a conditional between literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _names(node.body), _names(node.orelse)
        return None if body is None or orelse is None else body + orelse
    return None


def emitted() -> tuple[dict[str, list[str]], list[str]]:
    """Event name → where it is emitted; and the places whose name is not a literal (cannot be checked)."""
    found: dict[str, list[str]] = {}
    dynamic: list[str] = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _is_audit_record(node):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                names = _names(node.args[0]) if node.args else None
                if names is None:
                    dynamic.append(where)
                    continue
                for name in names:
                    found.setdefault(name, []).append(where)
    return found, dynamic


def test_every_emitted_event_is_registered() -> None:
    found, dynamic = emitted()
    assert not dynamic, f"audit events with a computed name cannot be checked: {dynamic}"
    assert len(found) >= 30, sorted(found)  # the walk really found the emitting calls
    unregistered = {name: where for name, where in found.items() if name not in ACTIONS}
    assert not unregistered, f"emitted but not in bastion/audit.py: {unregistered}"


def test_every_registered_event_is_emitted() -> None:
    found, _ = emitted()
    assert sorted(set(ACTIONS) - set(found)) == [], "registered in bastion/audit.py but emitted nowhere"


def test_codes_are_unique() -> None:
    codes = [a.code for a in ACTIONS.values()]
    assert len(codes) == len(set(codes))
