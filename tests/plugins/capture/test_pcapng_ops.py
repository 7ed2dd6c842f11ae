"""``capture.start`` / ``capture.stop`` / ``capture.status`` control ops, bound to the runtime's
capture manager (``view.capture``)."""

from __future__ import annotations

import collections
from types import SimpleNamespace
from typing import Any

import pytest

from nf.ops import OpError, RequestContext, build_ops

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
