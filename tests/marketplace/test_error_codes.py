"""One registry of error codes per app: every code the code raises comes from a registry, and the
OpenAPI schema lists them all on its error responses."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from django.core.management import call_command

from marketplace.api.schema import ERROR_CODE_REGISTRIES, error_codes
from marketplace.errors import ApplicationError

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "marketplace", "suppliers", "orders", "billing")
ERROR_CALLS = ("Error", "Input", "Conflict", "NotFound", "Forbidden", "Transition", "Capacity", "Funds", "error_body")


def _app_files() -> list[Path]:
    return sorted(p for app in APPS for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts)


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def bare_codes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, code) for each error code written as a string literal instead of a registry member."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node).endswith(ERROR_CALLS):
            for keyword in node.keywords:
                if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                    found.append((node.lineno, keyword.value.value))
            if _call_name(node) == "error_body" and node.args and isinstance(node.args[0], ast.Constant):
                found.append((node.lineno, node.args[0].value))
        if isinstance(node, ast.ClassDef):
            for statement in node.body:
                targets = statement.targets if isinstance(statement, ast.Assign) else []
                if isinstance(statement, ast.AnnAssign):
                    targets = [statement.target]
                value = getattr(statement, "value", None)
                names = {getattr(t, "id", "") for t in targets}
                if names & {"code", "error_code"} and isinstance(value, ast.Constant):
                    found.append((statement.lineno, value.value))
    return found


def test_no_error_code_is_a_bare_string():
    bare = [
        f"{path.relative_to(ROOT)}:{line}: {code!r}"
        for path in _app_files()
        for line, code in bare_codes(ast.parse(path.read_text()))
    ]
    assert not bare, "error codes belong in the app's errors.py registry:\n" + "\n".join(bare)


def test_the_checker_finds_bare_codes():
    source = (
        "class Late(Conflict):\n    code = 'too_late'\n"
        "class Strict(ValidationError):\n    error_code = 'strict'\n"
        "raise InvalidInput('x', code='bad_thing')\n"
        "error_body('oops', 'detail')\n"
        "raise InvalidInput('x', code=ErrorCode.INVALID)\n"
    )
    assert sorted(bare_codes(ast.parse(source))) == [(2, "too_late"), (4, "strict"), (5, "bad_thing"), (6, "oops")]


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_exception_code_is_registered():
    registered = set(error_codes())
    for cls in _subclasses(ApplicationError):
        assert cls.code in registered, f"{cls.__module__}.{cls.__name__}.code = {cls.code!r} is not in a registry"


def test_registries_do_not_repeat_a_code():
    values = [code.value for registry in ERROR_CODE_REGISTRIES for code in registry]
    assert len(values) == len(set(values))


def test_the_schema_lists_every_code_on_error_responses(tmp_path):
    path = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["code"]["enum"] == error_codes()
    assert {"insufficient_capacity", "insufficient_funds", "not_a_supplier", "email_taken"} <= set(error_codes())
    place_order = schema["paths"]["/api/v1/orders/"]["post"]["responses"]
    for status in ("400", "402", "409"):
        assert place_order[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    for path_item in schema["paths"].values():
        for operation in path_item.values():
            assert "404" in operation["responses"], operation["operationId"]
