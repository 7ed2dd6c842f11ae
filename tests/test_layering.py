"""DESIGN.md decision 3: imports run nf -> plugins -> pipeline only; zmq/cryptography/scapy stay
out of the layers that must not see them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "pipeline": {"nf", "plugins", "zmq", "cryptography", "scapy"},
    "plugins": {"nf", "zmq"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT)
        hits = imported_roots(path) & FORBIDDEN[package]
        # scapy is allowed only in offline capture helpers, never in the per-packet path.
        if package == "plugins" and "capture" in rel.parts:
            hits.discard("scapy")
        if hits:
            bad.append(f"{rel}: {sorted(hits)}")
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_plugins_do_not_import_scapy_outside_capture() -> None:
    bad = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "plugins").rglob("*.py")
        if "capture" not in p.parts and "scapy" in imported_roots(p)
    ]
    assert not bad
