"""``echo``: sends every byte back to the client; closes when the client half-closes."""

from __future__ import annotations

from pipeline.chain import BaseStage, PluginEnv, StreamStage


class EchoStage(BaseStage):
    def receive_data(self, data: bytes, now: float) -> None:
        if self.down is not None and data:
            self.down.send(data)

    def receive_eof(self, now: float) -> None:
        if self.down is not None:
            self.down.close()


class EchoPlugin:
    """Plain echo; takes no argument."""

    def __init__(self, arg: str | None, env: PluginEnv) -> None:
        if arg:
            raise ValueError(f"echo takes no argument (got {arg!r})")

    def new_stage(self, next_stage: StreamStage | None) -> StreamStage:
        if next_stage is not None:
            raise ValueError("echo is an application stage and must be last in its chain")
        return EchoStage()
