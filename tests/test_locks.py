"""Every `select_for_update` lives in an app's locks.py (whose docstring states the lock order)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "marketplace", "suppliers", "orders", "billing")


def test_row_locks_live_in_locks_modules():
    outside = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if path.name == "locks.py" or "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "select_for_update":
                    outside.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not outside, "select_for_update outside a locks.py:\n" + "\n".join(outside)


def test_each_locks_module_states_the_lock_order():
    for path in sorted(ROOT.glob("*/locks.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "lock order" in docstring, path
