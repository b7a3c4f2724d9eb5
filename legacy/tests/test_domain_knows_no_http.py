"""The domain modules of the legacy apps (writes, reads, pricing, orchestration, their errors)
import nothing of DRF: they raise typed domain errors, and only the API edge speaks HTTP."""

import ast
import importlib
from pathlib import Path

import pytest
from rest_framework.exceptions import APIException

LEGACY = Path(__file__).resolve().parent.parent
DOMAIN_MODULES = sorted(
    path
    for app in ("shop", "crm", "mes")
    for name in ("services.py", "selectors.py", "exceptions.py", "orchestrator.py", "pricing.py")
    if (path := LEGACY / app / name).exists()
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_app_has_domain_modules() -> None:
    assert {path.parent.name for path in DOMAIN_MODULES} == {"shop", "crm", "mes"}


@pytest.mark.parametrize("path", DOMAIN_MODULES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_a_domain_module_imports_nothing_of_drf(path: Path) -> None:
    drf = sorted(name for name in imported_modules(path) if name.split(".")[0] == "rest_framework")
    assert not drf, f"{path} imports {drf}"


def imported_names(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    ]


@pytest.mark.parametrize("path", DOMAIN_MODULES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_a_domain_module_raises_no_drf_exception_by_another_name(path: Path) -> None:
    # ops.errors.DomainError was a DRF APIException that services raised; this would find its like.
    drf_exceptions = [
        f"{module}.{name}"
        for module, name in imported_names(path)
        if isinstance(found := getattr(importlib.import_module(module), name, None), type)
        and issubclass(found, APIException)
    ]
    assert not drf_exceptions, f"{path} imports {drf_exceptions}"
