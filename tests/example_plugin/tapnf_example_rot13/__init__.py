"""``rot13``: an example third-party tapnf stream stage.

It sits anywhere in a chain and applies ROT13 to the ASCII letters passing through it:
``rot13`` (or ``rot13:both``) in both directions, ``rot13:up`` only to bytes from the client,
``rot13:down`` only to bytes toward the client. Everything else (EOF, close, timers) passes
through unchanged. A virtual server's own table may set ``rot13_direction`` instead of the
argument.

The whole contract with tapnf (``pipeline.chain``):

* the entry point ``tapnf.plugins: rot13`` names a factory called once per virtual server as
  ``Rot13Plugin(arg, env)`` (``arg``: the text after ``rot13:``; ``env``: a ``PluginEnv`` with the
  virtual server's options in ``env.vs``). Raise ``ValueError`` for bad configuration: tapnf
  reports it with the chain entry's path;
* ``new_stage(next_stage)`` builds one ``StreamStage`` per connection; a stage that wraps the next
  one passes bytes up with ``next_stage.receive_data`` and hands it a ``Downstream`` of its own
  for bytes going down;
* stages are sans-IO: no sockets, no clock (``now`` is an argument), no blocking.
"""

from __future__ import annotations

from pipeline.chain import BaseStage, Downstream, FlowInfo, PluginEnv, StreamStage

_TABLE = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)
DIRECTIONS = ("both", "up", "down")


def rot13(data: bytes) -> bytes:
    return data.translate(_TABLE)


class _Rot13Down:
    """The Downstream the next stage writes to: ROT13, then the real one."""

    def __init__(self, down: Downstream) -> None:
        self.down = down

    def send(self, data: bytes) -> None:
        self.down.send(rot13(data))

    def close(self) -> None:
        self.down.close()

    def abort(self, reason: str) -> None:
        self.down.abort(reason)


class Rot13Stage(BaseStage):
    def __init__(self, next_stage: StreamStage, direction: str) -> None:
        super().__init__(next_stage)
        self.up = direction in ("both", "up")
        self.down_too = direction in ("both", "down")
        self.bytes = 0

    def on_open(self, flow: FlowInfo, down: Downstream, now: float) -> None:
        flow.facts["rot13"] = "both" if self.up and self.down_too else ("up" if self.up else "down")
        super().on_open(flow, _Rot13Down(down) if self.down_too else down, now)

    def receive_data(self, data: bytes, now: float) -> None:
        self.bytes += len(data)
        super().receive_data(rot13(data) if self.up else data, now)


class Rot13Plugin:
    """The factory tapnf calls once per virtual server."""

    def __init__(self, arg: str | None, env: PluginEnv) -> None:
        direction = arg or env.vs.get("rot13_direction", "both")
        if direction not in DIRECTIONS:
            raise ValueError(f"rot13 direction must be one of {', '.join(DIRECTIONS)}")
        self.direction = direction

    def new_stage(self, next_stage: StreamStage | None) -> StreamStage:
        if next_stage is None:
            raise ValueError("rot13 transforms bytes for the next stage: put one after it")
        return Rot13Stage(next_stage, self.direction)


__all__ = ["Rot13Plugin", "Rot13Stage", "rot13"]
