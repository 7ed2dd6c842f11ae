"""MemoryPort: the in-memory frame source/sink used by tests."""

from __future__ import annotations

from pipeline.io.memory import MemoryPort


def test_memory_port_round_trip_and_bounds() -> None:
    port = MemoryPort(capacity=2)
    assert port.fileno() is None
    assert port.inject(b"a") and port.inject(memoryview(b"b")) and not port.inject(b"c")
    assert port.inject_drops == 1
    assert port.read_frames(1) == [b"a"]
    assert port.read_frames(5) == [b"b"]
    assert port.read_frames(5) == []
    assert port.write_frame(b"1") and port.write_frame(bytearray(b"2"))
    assert not port.write_frame(b"3") and port.write_drops == 1
    assert port.sent() == [b"1", b"2"] and port.sent() == []
    port.close()
    assert not port.write_frame(b"4")
