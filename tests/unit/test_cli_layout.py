"""The command line's shape: audience modules that share only the output module, and a
``fibosms --help`` that imports none of the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "fibosms" / "cli"
AUDIENCES = ["apps", "operators", "processes"]
SHARED = {"fibosms.cli.output", "fibosms.cli.params"}


def cli_imports(module: str) -> set[str]:
    """The fibosms.cli modules ``module`` imports, at the top or inside a function."""
    tree = ast.parse((CLI / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "fibosms.cli":
            names = [f"fibosms.cli.{a.name}" for a in node.names]  # from fibosms.cli import x
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("fibosms.cli.")}
    return found


@pytest.mark.parametrize("module", AUDIENCES)
def test_an_audience_module_imports_only_the_shared_ones(module: str) -> None:
    allowed = SHARED | ({"fibosms.cli.devstack"} if module == "processes" else set())
    assert cli_imports(module) <= allowed


@pytest.mark.parametrize("module", ["output", "params", "devstack"])
def test_the_shared_modules_import_no_other_cli_module(module: str) -> None:
    assert cli_imports(module) <= {"fibosms.cli.params"} - {f"fibosms.cli.{module}"}


def test_the_group_gathers_every_audience() -> None:
    assert {f"fibosms.cli.{m}" for m in AUDIENCES} <= cli_imports("main")


def test_the_command_line_loads_without_the_heavy_libraries() -> None:
    script = (
        "import sys, fibosms.cli.main\n"
        "heavy = ['sqlalchemy', 'celery', 'kombu', 'flower', 'prometheus_client',"
        " 'worker.sandbox', 'worker.settings', 'pydantic', 'producer', 'requests']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == ""


def test_producer_no_longer_holds_the_command_line() -> None:
    producer = CLI.parents[1] / "producer"
    assert not {"cli.py", "cli_ops.py", "devstack.py"} & {p.name for p in producer.iterdir()}


def test_the_image_ships_every_package_the_console_script_needs() -> None:
    deploy = CLI.parents[1] / "deploy"
    dockerfile = (deploy / "Dockerfile").read_text(encoding="utf-8").splitlines()
    ignore = (deploy / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    for package in ("fibosms", "producer", "worker"):
        assert f"COPY {package} ./{package}" in dockerfile, package
        assert f"!{package}/**" in ignore, package
