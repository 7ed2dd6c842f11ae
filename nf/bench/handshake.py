"""``nf bench handshake``: TLS 1.2 handshakes from ``openssl s_time`` inside the lab namespace,
through the TAP to tapnf and over the veth to nginx, with the server's CPU per connection.

Cases (client cipher picks the certificate; both servers hold the same ECDSA and RSA chains):

* ``full_ecdsa``  ``-new``, ECDHE-ECDSA-AES128-GCM-SHA256, port 443 (tickets off)
* ``full_rsa``    ``-new``, ECDHE-RSA-AES128-GCM-SHA256, port 443
* ``resumed_id``  ``-reuse``, ECDSA, port 443: resumption by session ID (tickets off on the server)
* ``resumed_ticket`` ``-reuse``, ECDSA, port 8443: resumption by ticket (tickets on)

Per round and case tapnf and nginx run back to back (the order alternates between rounds); the
server CPU is the growth of utime+stime of ``nf run`` and of nginx's master+worker over the run,
divided by the connections s_time completed. A resumption case whose client reports fewer than
95 % reused connections is an error, not a figure.

Beside it, the ``<case> srv+client`` rows add the CPU of the s_time client itself (the bench's
waited-for children: ``ip netns exec`` and s_time): what the whole exchange costs the machine. It
also checks the server-only figure for a bias: a kernel server's TCP input (SYN to accept, the
client's segments into its socket) runs in the softirq raised by the client's send on the veth
and is charged to the client, while tapnf reads raw frames and does its TCP input itself. Measured
(November 2026): the client pays ~15 µs more per resumed connection against nginx than against
tapnf, so that bias is small beside the server figures.

``full_ecdsa+stalled_sub`` repeats ``full_ecdsa`` on tapnf with a ZeroMQ subscriber attached to
the event endpoint that never reads (driven until the NF drops events for it), against the same
with a subscriber that reads every event (``+reading_sub``): the ratio should stay near 1, a
stalled collector must cost no more than a live one. The reference is a reading subscriber, not
none, because with no subscriber the NF does not build events at all; ``full_ecdsa+reading_sub``
against ``no sub`` shows what the events cost.
"""

from __future__ import annotations

import re
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq

from nf.bench.figures import Report
from nf.bench.lab import REF_B, VIP, BenchLab, LabError
from nf.bench.nginx import Nginx
from nf.bench.procs import tree_cpu_seconds
from nf.commands.ctl import request

ECDSA = "ECDHE-ECDSA-AES128-GCM-SHA256"
RSA = "ECDHE-RSA-AES128-GCM-SHA256"
# case -> (s_time mode, cipher, port, target for tapnf/nginx CPU per connection)
CASES: dict[str, tuple[str, str, int, float | None]] = {
    "full_ecdsa": ("-new", ECDSA, 443, 1.0),
    "full_rsa": ("-new", RSA, 443, None),
    "resumed_id": ("-reuse", ECDSA, 443, 2.0),
    "resumed_ticket": ("-reuse", ECDSA, 8443, 2.0),
}
MIN_REUSED = 0.95
_PROGRESS = set("r*0123456789")  # one mark per connection
_COUNT = re.compile(r"^(\d+) connections in ([\d.]+)s;", re.M)


@dataclass(frozen=True)
class STimeRun:
    connections: int
    reused: int
    wall_s: float
    cpu_s: float
    client_cpu_s: float = 0.0  # the s_time process (and ip netns exec) itself

    @property
    def per_second(self) -> float:
        return self.connections / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.connections * 1e6 if self.connections else float("inf")

    @property
    def total_cpu_us(self) -> float:
        """Server and client CPU per connection."""
        total = self.cpu_s + self.client_cpu_s
        return total / self.connections * 1e6 if self.connections else float("inf")


def _children_cpu() -> float:
    """CPU seconds of this process's finished, waited-for children (the s_time runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def parse_s_time(stdout: str) -> tuple[int, int]:
    """(connections, reused) from ``openssl s_time`` output ('r' marks a reused connection)."""
    m = _COUNT.search(stdout)
    if m is None:
        raise LabError(f"unexpected s_time output: {stdout[-300:]!r}")
    reused = sum(
        line.count("r")
        for line in stdout[: m.start()].splitlines()
        if line and set(line) <= _PROGRESS
    )
    return int(m.group(1)), reused


def s_time(
    lab: BenchLab, host: str, port: int, mode: str, cipher: str, seconds: int, cpu: Any
) -> STimeRun:
    """One s_time run; ``cpu()`` returns the serving processes' CPU seconds."""
    argv = ["openssl", "s_time", "-connect", f"{host}:{port}", "-tls1_2", "-cipher", cipher]
    c0, t0, k0 = cpu(), time.monotonic(), _children_cpu()
    r = lab.ns([*argv, mode, "-time", str(seconds)], timeout=seconds * 4 + 30)
    wall, c1, k1 = time.monotonic() - t0, cpu(), _children_cpu()
    if r.returncode != 0:
        raise LabError(f"s_time {host}:{port} {mode} failed: {r.stderr.strip()[-300:]}")
    conns, reused = parse_s_time(r.stdout)
    if mode == "-reuse" and conns and reused < MIN_REUSED * conns:
        raise LabError(f"s_time {host}:{port}: only {reused}/{conns} connections resumed")
    return STimeRun(conns, reused, wall, c1 - c0, k1 - k0)


class StalledSubscriber:
    """A SUB socket on the NF's event endpoint that never reads.

    Its receive queue and socket buffer are tiny, so after a few thousand events the NF's PUB
    queue for it is full too and further events are dropped (``events.dropped``): :meth:`fill`
    drives cheap resumed handshakes until that counter moves, so the measured run really happens
    with a stalled collector attached.
    """

    def __init__(self, endpoint: str) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 1)
        self.sock.setsockopt(zmq.RCVBUF, 4096)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)

    def fill(self, lab: BenchLab, max_runs: int = 20) -> int:
        """Resumed handshakes until the NF drops events; returns its ``events.dropped``."""
        return handshakes_until(lab, "events.dropped", max_runs, "the stalled subscriber")

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()


class ReadingSubscriber:
    """A SUB socket on the NF's event endpoint that takes every event as it comes: a ZeroMQ proxy
    (C, no GIL: the bench's Python does not compete for the two cores) to a PUB nobody
    subscribes to, which discards them."""

    def __init__(self, endpoint: str) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)
        self._sink = self.ctx.socket(zmq.PUB)
        self._sink.bind(f"inproc://sink-{id(self)}")
        self._control = self.ctx.socket(zmq.PAIR)
        self._control.bind(f"inproc://control-{id(self)}")
        self._steer = self.ctx.socket(zmq.PAIR)
        self._steer.connect(f"inproc://control-{id(self)}")
        self._thread = threading.Thread(
            target=zmq.proxy_steerable,
            args=(self.sock, self._sink, None, self._steer),
            name="reading-sub",
            daemon=True,
        )
        self._thread.start()

    def warm(self, lab: BenchLab, max_runs: int = 10) -> None:
        """Resumed handshakes until the NF publishes events (it has seen the subscription)."""
        handshakes_until(lab, "events.published", max_runs, "the reading subscriber")

    def close(self) -> None:
        self._control.send(b"TERMINATE")
        self._thread.join(timeout=5)
        for sock in (self.sock, self._sink, self._control, self._steer):
            sock.close(linger=0)
        self.ctx.term()


def nf_counter(lab: BenchLab, name: str) -> int:
    """One of the NF's counters (``nf.stats``), over its control channel."""
    reply = request(lab.control, "nf.stats", {}, timeout=5.0)
    if reply is None or not reply.get("ok"):
        raise LabError(f"nf.stats failed: {reply}")
    return int(reply["result"]["counters"].get(name, 0))


def handshakes_until(lab: BenchLab, counter: str, max_runs: int, who: str) -> int:
    """One-second runs of resumed handshakes until the NF's ``counter`` moves (a subscriber
    just attached has had its effect); returns the counter."""
    start = nf_counter(lab, counter)
    for _ in range(max_runs):
        s_time(lab, VIP, 443, "-reuse", ECDSA, 1, lambda: 0.0)
        now = nf_counter(lab, counter)
        if now > start:
            return now
    raise LabError(f"{who}: the NF's {counter} did not move in {max_runs} s")


def events_dropped(lab: BenchLab) -> int:
    """The NF's ``events.dropped`` counter."""
    return nf_counter(lab, "events.dropped")


def run(lab: BenchLab, nginx: Nginx | None, report: Report, rounds: int, seconds: int) -> None:
    pid = lab.nf_pid()

    def nf_cpu() -> float:
        return tree_cpu_seconds(pid)

    rows = {}
    for case, (_, _, _, target) in CASES.items():
        if nginx is not None:
            rows[case] = (
                report.row(
                    "handshake", case, "CPU µs/conn", "nginx", better="lower", target=target
                ),
                report.row("handshake", case, "conn/s", "nginx"),
                report.row(
                    "handshake",
                    f"{case} srv+client",
                    "CPU µs/conn",
                    "nginx",
                    better="lower",
                    note="server and s_time CPU together (see nf/bench/handshake.py)",
                ),
            )
    stalled = report.row(
        "handshake", "full_ecdsa+stalled_sub", "CPU µs/conn", "reading sub", better="lower"
    )
    reading = report.row(
        "handshake", "full_ecdsa+reading_sub", "CPU µs/conn", "no sub", better="lower"
    )
    dropped = 0
    for rnd in range(rounds):
        for case, (mode, cipher, port, _) in CASES.items():
            if nginx is None:
                continue
            sides = [("nf", VIP, nf_cpu), ("nginx", REF_B, nginx.cpu_seconds)]
            if rnd % 2:
                sides.reverse()
            got = {
                name: s_time(lab, host, port, mode, cipher, seconds, cpu)
                for name, host, cpu in sides
            }
            cpu_row, rate_row, total_row = rows[case]
            cpu_row.add(got["nf"].cpu_us, got["nginx"].cpu_us)
            rate_row.add(got["nf"].per_second, got["nginx"].per_second)
            total_row.add(got["nf"].total_cpu_us, got["nginx"].total_cpu_us)
        plain = s_time(lab, VIP, 443, "-new", ECDSA, seconds, nf_cpu)
        reader = ReadingSubscriber(lab.events)
        try:
            reader.warm(lab)
            with_reader = s_time(lab, VIP, 443, "-new", ECDSA, seconds, nf_cpu)
        finally:
            reader.close()
        reading.add(with_reader.cpu_us, plain.cpu_us)
        reading.note = "a subscriber that reads every event: what publishing events costs"
        sub = StalledSubscriber(lab.events)
        try:
            before = sub.fill(lab)
            with_sub = s_time(lab, VIP, 443, "-new", ECDSA, seconds, nf_cpu)
            dropped += events_dropped(lab) - before
        finally:
            sub.close()
        stalled.add(with_sub.cpu_us, with_reader.cpu_us)
        stalled.note = f"subscriber never reads; {dropped} events dropped in the measured runs"


__all__ = [
    "CASES",
    "ReadingSubscriber",
    "STimeRun",
    "StalledSubscriber",
    "events_dropped",
    "handshakes_until",
    "nf_counter",
    "parse_s_time",
    "run",
    "s_time",
]
