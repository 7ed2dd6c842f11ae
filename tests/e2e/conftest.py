from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nf.bench.lab import can_run_labs
from tests.e2e.lab import Lab, lab_nf

ECHO_VS = """
[[virtual_servers]]
name = "vs_echo"
port = 7
chain = ["echo"]
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = can_run_labs()
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """An NF with the echo virtual server on port 7 and a control channel over ipc://."""
    with lab_nf(tmp_path, ECHO_VS, control=False) as lab:
        yield lab
