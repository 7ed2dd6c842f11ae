"""``capture.start`` / ``capture.stop`` / ``capture.status`` control ops, bound to the runtime's
capture manager (``view.capture``)."""

from __future__ import annotations

import collections
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nf.ops import OpError, RequestContext, build_ops
from pipeline.chain import PacketChain
from plugins.capture.manager import CaptureManager

CTX = RequestContext(secure=False)


def bare_view(**extra: Any) -> Any:
    return SimpleNamespace(
        counters=collections.Counter(), tls=None, endpoint_is_secure=False, **extra
    )


def test_capture_ops_are_listed_with_their_arguments() -> None:
    ops = {o["op"]: o for o in build_ops(bare_view()).describe()}
    assert ops["capture.start"]["args"][:2] == ["path", "format"]
    assert {"capture.stop", "capture.status"} <= set(ops)


def test_capture_ops_without_a_manager_answer_no_capture() -> None:
    table = build_ops(bare_view())
    with pytest.raises(OpError) as exc:
        table.call("capture.status", {}, CTX)
    assert exc.value.code == "no_capture"


def test_capture_start_validates_arguments_before_the_manager() -> None:
    table = build_ops(bare_view())
    with pytest.raises(OpError) as exc:
        table.call("capture.start", {}, CTX)
    assert (exc.value.code, exc.value.field) == ("bad_args", "args.path")
    with pytest.raises(OpError) as exc:
        table.call("capture.start", {"path": "x", "files": True}, CTX)
    assert (exc.value.code, exc.value.field) == ("bad_args", "args.files")
    with pytest.raises(OpError) as exc:
        table.call("capture.start", {"path": "x", "snaplen": 3}, CTX)
    assert exc.value.code == "bad_args"


def test_capture_start_needs_a_secure_endpoint(tmp_path: Path) -> None:
    """It writes files and embeds every TLS secret: the same rule as a ticket key export."""
    captures = CaptureManager(PacketChain())
    table = build_ops(bare_view(capture=captures))
    path = str(tmp_path / "x.pcapng")
    with pytest.raises(OpError) as exc:
        table.call("capture.start", {"path": path}, CTX)
    assert exc.value.code == "insecure_endpoint" and captures.status() == {"captures": []}
    assert table.call("capture.start", {"path": path}, RequestContext(secure=True))["active"]
    assert table.call("capture.status", {}, CTX)["captures"][0]["path"] == path
    assert table.call("capture.stop", {}, CTX)["stopped"][0]["path"] == path
