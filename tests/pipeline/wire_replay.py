"""In-process replay of ``openssl s_time``-shaped TLS connections through the whole frame path:
host stack, TCP, the ``tls`` stage and engine, ``http`` (what ``nf bench handshake`` drives
through the TAP), without the loop's syscalls.

``record`` builds a runtime from ``configs/lab.toml`` (memory port, no control sockets, a fake
clock, a seeded rng) and plays the client the way the lab capture shows it: a scripted Linux-like
TCP (SYN with MSS, SACK-permitted, timestamps, window scale; pure ACKs; RST at the end) carrying
Python's ``ssl`` client over ``MemoryBIO``, in the loop's wakes (SYN | ACK + ClientHello | ACK +
client flight (+ RST)); each wake is fed as ``Loop.run`` feeds a frames-only wake. ``replay``
feeds the recorded client frames, at the recorded times, to a fresh runtime with the same seed:
its output must be byte-identical (``digest``), and only its CPU is timed. ECDSA signatures are
made deterministic (RFC 6979) for the duration (``deterministic_ecdsa``) so a replayed full
handshake's transcript matches the recorded client's Finished.

    python -m tests.pipeline.wire_replay resumed_id|resumed_ticket|full [CONNS] [REPS]
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import ssl
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nf.config import load_config_data
from nf.runtime import Clocks, Runtime
from pipeline.io.memory import MemoryPort
from pipeline.wire import ipv4
from pipeline.wire.tcp import ACK, PSH, RST, SYN, TcpRepr

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "configs" / "lab.toml"
SRV_MAC = bytes.fromhex("02000000 0a10".replace(" ", ""))
CLI_MAC = bytes.fromhex("cab715d5332b")
CLIENT = bytes([192, 0, 2, 1])
VIP = bytes([192, 0, 2, 10])
LINUX_SYN_OPTS = "020405b40402080a{ts:08x}00000000010303 0a".replace(" ", "")
MAX_SLEEP = 1.0  # nf.loop's: a wake this long after the last ask asks again
CASES = ("resumed_id", "resumed_ticket", "full")

Script = list[tuple[float, list[bytes]]]  # (now, client frames of one wake)


@contextlib.contextmanager
def deterministic_ecdsa() -> Iterator[None]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from plugins.tls import certs

    saved = dict(certs._SIGN_ARGS)
    for scheme, args in saved.items():
        if isinstance(args[0], ec.ECDSA):
            certs._SIGN_ARGS[scheme] = (ec.ECDSA(args[0].algorithm, deterministic_signing=True),)
    try:
        yield
    finally:
        certs._SIGN_ARGS.clear()
        certs._SIGN_ARGS.update(saved)


class CountingBus:
    """Counts events (and handshake outcomes); fields are encoded like the exporter would."""

    def __init__(self) -> None:
        import msgpack

        self._pack = msgpack.Packer().pack
        self.outcomes: dict[str, int] = {}
        self.events = 0

    def emit(self, topic: str, fields: Any) -> None:
        self._pack(fields)
        self.events += 1
        if topic == "tls.handshake":
            key = fields["outcome"]
            self.outcomes[key] = self.outcomes.get(key, 0) + 1


@dataclass
class Lab:
    runtime: Runtime
    bus: CountingBus
    clock: list[float] = field(default_factory=lambda: [100.0])
    deadline: float | None = None
    asked: float = 0.0

    def wake(self, frames: list[bytes], now: float) -> list[bytes]:
        """One loop wake carrying ``frames``, preceded by a timer wake if a deadline passed."""
        out: list[bytes] = []
        if self.deadline is not None and self.deadline < now:
            self.clock[0] = self.deadline
            out += self._turn([], self.deadline, stale=True)
        self.clock[0] = now
        out += self._turn(frames, now, stale=False)
        return out

    def _turn(self, frames: list[bytes], now: float, stale: bool) -> list[bytes]:
        rt, host = self.runtime, self.runtime.host
        for frame in frames:
            host.receive_frame(frame, now)
        if stale or host.timers_dirty or now - self.asked >= MAX_SLEEP:
            host.timers_dirty = False
            self.deadline, self.asked = rt.poll_at(now, full=stale), now
        fired = self.deadline is not None and self.deadline <= now
        if fired:
            rt.handle_timers(now)
        out: list[bytes] = host.frames_to_send(now)
        if fired or host.timers_dirty:
            host.timers_dirty = False
            self.deadline, self.asked = rt.poll_at(now, full=fired), now
        return out


def make_lab(cpu_clock: Callable[[], float] = time.process_time, seed: int = 7) -> Lab:
    data = tomllib.loads(LAB.read_text())
    data.pop("control", None)
    data["interface"] = {"kind": "memory", "mac": data["interface"]["mac"]}
    cfg = load_config_data(data, source=LAB)
    clock = [100.0]
    bus = CountingBus()
    rt = Runtime(
        cfg,
        port=MemoryPort(),
        clocks=Clocks(
            monotonic=lambda: clock[0], wall=lambda: 1_800_000_000.0 + clock[0], cpu=cpu_clock
        ),
        rng=random.Random(seed).randbytes,
        bus=bus,
    )
    rt.build()
    lab = Lab(rt, bus, clock)
    lab.deadline, lab.asked = rt.poll_at(clock[0]), clock[0]
    return lab


def _frame(seg: TcpRepr, ident: int) -> bytes:
    tcp = seg.emit(CLIENT, VIP)
    return (
        SRV_MAC + CLI_MAC + b"\x08\x00" + ipv4.build_header(CLIENT, VIP, 6, len(tcp), ident) + tcp
    )


def _segments(frames: list[bytes]) -> list[TcpRepr]:
    out = []
    for fr in frames:
        if fr[12:14] == b"\x08\x00" and fr[23] == 6:
            out.append(TcpRepr.parse(memoryview(fr)[14 + (fr[14] & 15) * 4 :]))
    return out


def _client(tickets: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


class _Client:
    """The scripted TCP client of one recording: its frames go into ``script`` wake by wake."""

    def __init__(self, lab: Lab, script: Script, digest: Any) -> None:
        self.lab, self.script, self.digest = lab, script, digest
        self.now, self.ident = lab.clock[0], 0
        self.port = self.sport = self.cts = 0
        self.srv_ts: int | None = 0

    def connect(self, port: int, sport: int, cts: int) -> None:
        self.port, self.sport, self.cts, self.srv_ts = port, sport, cts, 0

    def wake(self, segs: list[TcpRepr], dt: float) -> list[TcpRepr]:
        self.now += dt
        frames = []
        for s in segs:
            self.ident = (self.ident + 1) & 0xFFFF
            frames.append(_frame(s, self.ident))
        self.script.append((self.now, frames))
        out = self.lab.wake(frames, self.now)
        for fr in out:
            self.digest.update(fr)
        replies = _segments(out)
        for r in replies:
            self.srv_ts = r.timestamp[0] if r.timestamp else None
        return replies

    def seg(self, seq: int, ack: int, flags: int, payload: bytes = b"") -> TcpRepr:
        ts = (self.cts, self.srv_ts) if self.srv_ts is not None else None
        seq, ack = seq & 0xFFFFFFFF, ack & 0xFFFFFFFF
        return TcpRepr(self.sport, self.port, seq, ack, flags, 63, payload, timestamp=ts)


def record(case: str, conns: int) -> tuple[Script, str, Lab]:
    """``conns`` connections of ``case`` (resumed cases: one full handshake first)."""
    lab = make_lab()
    port = 8443 if case == "resumed_ticket" else 443
    ctx = _client(case == "resumed_ticket")
    script: Script = []
    digest = hashlib.sha256()
    cl = _Client(lab, script, digest)
    session = None
    for i in range(conns + (case != "full")):
        sport, iss, cts = 30000 + i % 30000, (0x1000 + i * 7919 * 65536) & 0xFFFFFFFF, i * 1000 + 5
        cl.connect(port, sport, cts)
        inc, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, outb, session=session)
        opts = bytes.fromhex(LINUX_SYN_OPTS.format(ts=cts))
        (synack,) = cl.wake([TcpRepr(sport, port, iss, 0, SYN, 64240, extra_options=opts)], 0.0004)
        s, c = synack.seq + 1, iss + 1
        with contextlib.suppress(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = outb.read()
        flight = cl.wake([cl.seg(c, s, ACK), cl.seg(c, s, ACK | PSH, hello)], 0.0003)
        c += len(hello)
        data = b"".join(bytes(x.payload) for x in flight)
        s += len(data)
        inc.write(data)
        done = False
        with contextlib.suppress(ssl.SSLWantReadError):
            obj.do_handshake()
            done = True
        mine = outb.read()
        if done:  # resumed: CCS + Finished, then s_time's RST
            end = cl.seg(c + len(mine), s, ACK | RST)
            cl.wake([cl.seg(c, s, ACK), cl.seg(c, s, ACK | PSH, mine), end], 0.0004)
        else:  # full: CKE + CCS + Finished -> CCS + Finished; RST
            last = cl.wake([cl.seg(c, s, ACK), cl.seg(c, s, ACK | PSH, mine)], 0.0004)
            c += len(mine)
            s += sum(len(x.payload) for x in last)
            inc.write(b"".join(bytes(x.payload) for x in last))
            obj.do_handshake()
            cl.wake([cl.seg(c, s, ACK | RST)], 0.0003)
        if session is None and case != "full":
            session = obj.session
        elif case != "full" and not obj.session_reused:
            raise AssertionError(f"connection {i} was not resumed")
    return script, digest.hexdigest(), lab


def replay(
    script: Script, cpu_clock: Callable[[], float] = time.process_time
) -> tuple[float, str, Lab]:
    """(process CPU seconds, output digest, lab) of one replay on a fresh runtime."""
    lab = make_lab(cpu_clock)
    digest = hashlib.sha256()
    update, wake = digest.update, lab.wake
    t0 = time.process_time()
    for now, frames in script:
        for out in wake(frames, now):
            update(out)
    return time.process_time() - t0, digest.hexdigest(), lab


def main(argv: list[str]) -> None:
    case = argv[0] if argv else "resumed_id"
    conns = int(argv[1]) if len(argv) > 1 else 1000
    reps = int(argv[2]) if len(argv) > 2 else 5
    with deterministic_ecdsa():
        script, digest, _ = record(case, conns)
        runs = []
        for _ in range(reps):
            spent, got, lab = replay(script)
            if got != digest:
                raise SystemExit("replay output differs from the recording")
            runs.append(spent)
    n = conns + (case != "full")
    per = sorted(r / n * 1e6 for r in runs)
    print(
        f"{case}: {n} connections, CPU us/conn min {per[0]:.1f} med {per[len(per) // 2]:.1f} "
        f"max {per[-1]:.1f}; handshakes {lab.bus.outcomes}; output {digest[:12]}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
