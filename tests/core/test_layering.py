"""braid.core is sans-I/O: no clock, sockets, event loop, randomness or OS access, and
nothing from the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

import braid.core

FORBIDDEN_MODULES = {"asyncio", "socket", "time", "random", "os"}
FORBIDDEN_PACKAGES = ("braid.io", "braid.runtime", "braid.control", "braid.lab")
CORE = Path(braid.core.__file__).parent


def imported_modules(tree: ast.AST, module: str) -> list[str]:
    names = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.append(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.append(node.module)
    return names


def violations(path: Path) -> list[str]:
    relative = path.relative_to(CORE.parent.parent).with_suffix("")
    return source_violations(path.read_text(), ".".join(relative.parts))


def source_violations(source: str, module: str) -> list[str]:
    found = []
    for name in imported_modules(ast.parse(source), module):
        top = name.split(".")[0]
        if top in FORBIDDEN_MODULES or any(
            name == package or name.startswith(package + ".") for package in FORBIDDEN_PACKAGES
        ):
            found.append(f"{module} imports {name}")
    return found


def test_core_modules_import_nothing_forbidden() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) >= 10  # the walk really sees the core
    problems = [problem for path in files for problem in violations(path)]
    assert problems == []


def test_the_check_catches_violations() -> None:
    samples = {
        "import time": True,
        "import os.path": True,
        "from asyncio import sleep": True,
        "from braid.runtime import daemon": True,
        "from braid.io.udp import x": True,
        "from random import Random": True,
        "import socketserver": False,
        "from braid.core import wire": False,
        "import timeit": False,
        "from ..runtime import daemon": True,  # relative, from braid.core.sample
        "from . import wire": False,
    }
    for source, bad in samples.items():
        assert bool(source_violations(source, "braid.core.sample")) == bad, source
