"""The layering rules, checked on the source: the translation core stays pure, I/O stays at the edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ollama_shim"
PURE = sorted(
    [*(SRC / "translate").glob("*.py"), *(SRC / "wire").glob("*.py")]
    + [SRC / name for name in ("sse.py", "settings.py", "errors.py", "dialect.py", "timefmt.py")]
)
# No network, no logging, no environment, no web framework in the pure modules.
FORBIDDEN_IN_PURE = {"aiohttp", "logging", "os", "asyncio", "socket", "httpx", "sqlite3", "subprocess",
                     "prometheus_client", "ollama_shim.upstream", "ollama_shim.routes", "ollama_shim.registry",
                     "ollama_shim.app", "ollama_shim.server", "ollama_shim.backends", "ollama_shim.loader",
                     "ollama_shim.store", "ollama_shim.custom_models", "ollama_shim.tokens", "ollama_shim.metrics",
                     "ollama_shim.logs", "ollama_shim.discovery", "ollama_shim.doctor", "ollama_shim.workers",
                     "ollama_shim.model_files", "mmap"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                package = path.relative_to(SRC.parent).with_suffix("").parts[: -node.level]
                names.add(".".join([*package, node.module] if node.module else package))
            elif node.module:
                names.add(node.module)
    return names


def _hits(imported: set[str], forbidden: set[str]) -> set[str]:
    return {name for name in imported for bad in forbidden if name == bad or name.startswith(bad + ".")}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(SRC)))
def test_pure_modules_do_no_io(path: Path) -> None:
    assert _hits(_imports(path), FORBIDDEN_IN_PURE) == set()


def test_only_upstream_uses_the_http_client() -> None:
    users = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
             if any("ClientSession" in line for line in p.read_text().splitlines())}
    assert users == {"upstream.py"}


def test_the_check_itself_sees_imports() -> None:
    assert "aiohttp" in _imports(SRC / "upstream.py")
    assert "ollama_shim.wire" in _imports(SRC / "translate" / "request.py")
    assert "ollama_shim.upstream" in _imports(SRC / "registry.py")  # a relative import, resolved
