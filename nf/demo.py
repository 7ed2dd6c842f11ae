"""``nf demo``: the seed article's lab, reproduced with real clients and explained event by event.

It starts ``nf run -c configs/lab.toml`` on a namespace and TAP of its own, records every event,
and drives real OpenSSL (and Python ``ssl``) clients from inside the namespace through four acts:

1. stateful profile (``session_ticket = false``): a full handshake, then an abbreviated one by
   session ID;
2. tickets switched on over the control channel: a full handshake that issues a ticket, then an
   abbreviated one by ticket with the client's session ID echoed;
3. ticket keys rotated twice: the old ticket is accepted and re-issued, then refused with its
   reason once its key has been erased;
4. a burst of handshakes per mode with the server's cost of full vs resumed handshakes.

Every act checks what the client reported and what the event said; the exit status is non-zero
when a check fails. ``demo-out/`` keeps the events (msgpack, for ``nf report``), a capture and the
key log.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from nf import report as report_mod
from nf.collectors import Receiver, RecordWriter, StopFlag, subscriber
from nf.commands.ctl import request

ROOT = Path(__file__).resolve().parent.parent
LAB_CONFIG = ROOT / "configs" / "lab.toml"
VIP = "192.0.2.10"
SNI = "tapnf.lab"
READY_TIMEOUT = 30.0
EVENT_TIMEOUT = 10.0

BURST_CLIENT = r"""
import socket, ssl, sys, time
vip, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def ctx(tickets):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.maximum_version = ssl.TLSVersion.TLSv1_2
    c.load_verify_locations(ca)
    if not tickets:
        c.options |= ssl.OP_NO_TICKET
    return c

def connect(c, port, session=None):
    with socket.create_connection((vip, port), timeout=10) as raw:
        with c.wrap_socket(raw, server_hostname="tapnf.lab", session=session) as s:
            return s.session, s.session_reused

def run(label, port, tickets, resume):
    c = ctx(tickets)
    session, _ = connect(c, port) if resume else (None, False)
    reused = 0
    t0 = time.perf_counter()
    for _ in range(n):
        _, r = connect(c, port, session)
        reused += r
    dt = time.perf_counter() - t0
    print(f"{label} {n} {reused} {dt:.4f}", flush=True)

run("full", 443, False, False)
run("session_id", 443, False, True)
run("ticket", 8443, True, True)
"""


@dataclass
class Check:
    act: str
    what: str
    ok: bool
    detail: str = ""


class EventFeed(threading.Thread):
    """Collects every event in a background thread: records it, keeps it, prints a table row."""

    def __init__(self, endpoint: str, record: Path, show: Callable[[str, dict[str, Any]], None]):
        super().__init__(daemon=True)
        self.endpoint, self.record, self.show = endpoint, record, show
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.stop_flag = StopFlag()
        self.ready = threading.Event()

    def run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context()
        sock = subscriber(ctx, self.endpoint)
        writer = RecordWriter(self.record)
        try:
            self.ready.set()
            for topic, event in Receiver(sock, self.stop_flag):
                writer.write(topic, event)
                with self.cond:
                    self.events.append((topic, event))
                    self.cond.notify_all()
                self.show(topic, event)
        finally:
            writer.close()
            sock.close(linger=0)
            ctx.term()

    def handshakes(self) -> list[dict[str, Any]]:
        with self.cond:
            return [e for t, e in self.events if t == "tls.handshake"]

    def wait(
        self, pred: Callable[[list[tuple[str, dict[str, Any]]]], bool], timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def next_handshake(self, after: int, timeout: float = EVENT_TIMEOUT) -> dict[str, Any] | None:
        def enough(events: list[tuple[str, dict[str, Any]]]) -> bool:
            return sum(1 for t, _ in events if t == "tls.handshake") > after

        if not self.wait(enough, timeout):
            return None
        return self.handshakes()[after]

    def stop(self) -> None:
        self.stop_flag.stopped = True
        self.join(timeout=5)


def _short(hexid: Any, n: int = 12) -> str:
    if not hexid:
        return "(empty)"
    text = str(hexid)
    return text if len(text) <= n else text[:n] + "…"


def handshake_row(ev: dict[str, Any]) -> str:
    return (
        f"  #{ev.get('conn', '?'):<4} offered={ev.get('offered', '-'):<10} "
        f"outcome={ev.get('outcome', '-'):<8} method={str(ev.get('method') or '-'):<10} "
        f"reason={ev.get('reason', '-'):<18} sid={_short(ev.get('session_id')):<14} "
        f"client_sid={_short(ev.get('client_session_id')):<14} "
        f"tickets={ev.get('tickets_issued', 0)} key={_short(ev.get('ticket_key'), 8):<10} "
        f"{ev.get('duration_us', 0):>7}µs cpu={ev.get('cpu_us', 0)}µs"
    )


def show_event(topic: str, ev: dict[str, Any]) -> None:
    if topic == "tls.handshake":
        print(handshake_row(ev), flush=True)
    elif topic == "nf.profile":
        print(
            f"  [nf.profile] {ev.get('profile')}: changed {ev.get('changed')} (gen {ev.get('gen')})",
            flush=True,
        )
    elif topic == "tls.tickets":
        print(
            f"  [tls.tickets] {ev.get('profile')}: key {_short(ev.get('key'), 8)} {ev.get('action')}",
            flush=True,
        )


@dataclass
class Demo:
    out: Path
    netns: str
    tap: str
    quick: bool = False
    burst: int = 200
    checks: list[Check] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    feed: EventFeed | None = None

    def __post_init__(self) -> None:
        self.ready = threading.Event()
        self.lines: list[str] = []
        # Only a namespace the demo created is deleted afterwards (not a user's running lab).
        self.own_netns = not os.path.exists(f"/var/run/netns/{self.netns}")
        self.control = f"ipc://{self.out.resolve()}/control.sock"
        self.events = f"ipc://{self.out.resolve()}/events.sock"
        self.ca = LAB_CONFIG.parent / "certs" / "ca.pem"

    # ---- plumbing ------------------------------------------------------------------------------
    def overrides(self) -> list[str]:
        out = self.out.resolve()
        sets = {
            "instance": "demo",
            "interface.name": self.tap,
            "interface.netns": self.netns,
            "control.endpoint": self.control,
            "control.events": self.events,
            "capture.pcapng": str(out / "capture.pcapng"),
            "profiles.clientssl.keylog": str(out / "keylog.txt"),
            "profiles.clientssl_tickets.keylog": str(out / "keylog.txt"),
        }
        args: list[str] = []
        for key, value in sets.items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        return args

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("capture.pcap", "capture.pcapng", "keylog.txt", "events.msgpack"):
            (self.out / name).unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "nf", "run", "-c", str(LAB_CONFIG), *self.overrides()]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # A thread reads the NF's output (into nf.log) so the ready wait below is bounded even
        # when the NF hangs without printing anything.
        threading.Thread(target=self._pump, daemon=True).start()
        if not self.ready.wait(READY_TIMEOUT) or self.proc.poll() is not None:
            self.proc.kill()
            raise RuntimeError("nf run did not start:\n" + "".join(self.lines))
        print(self.lines[-1].rstrip(), flush=True)
        self.feed = EventFeed(self.events, self.out / "events.msgpack", show_event)
        self.feed.start()
        self.feed.ready.wait(5)
        # A PUB socket drops events for subscribers still connecting: wait until one reaches us.
        for _ in range(50):
            self.ctl("nf.status")
            if self.feed.wait(lambda evs: len(evs) > 0, 0.1):
                break

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.out / "nf.log", "w") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                if not self.ready.is_set():
                    self.lines.append(line)
                    if line.startswith("nf: ready"):
                        self.ready.set()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.feed is not None:
            self.feed.stop()
        for sock in ("control.sock", "events.sock"):  # the NF's ipc endpoints, stale once it exits
            (self.out / sock).unlink(missing_ok=True)
        if self.own_netns and os.path.exists(f"/var/run/netns/{self.netns}"):
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=10)

    def ctl(self, op: str, **args: Any) -> Any:
        reply = request(self.control, op, args, timeout=5.0)
        if reply is None:
            raise RuntimeError(f"control channel did not answer {op}")
        if not reply.get("ok"):
            raise RuntimeError(f"{op} failed: {reply.get('error')}")
        return reply.get("result")

    def ns(self, argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def s_client(self, port: int, *extra: str) -> tuple[str, dict[str, Any] | None]:
        """One OpenSSL handshake; returns ("New"|"Reused"|"failed", the event it produced)."""
        assert self.feed is not None
        before = len(self.feed.handshakes())
        argv = ["openssl", "s_client", "-connect", f"{VIP}:{port}", "-tls1_2", "-servername", SNI]
        r = self.ns([*argv, "-CAfile", str(self.ca), *extra])
        kind = (
            "Reused"
            if "\nReused, TLSv1.2" in r.stdout
            else "New"
            if "\nNew, TLSv1.2" in r.stdout
            else "failed"
        )
        print(f"  openssl s_client :{port} {' '.join(extra)}  →  {kind}", flush=True)
        return kind, self.feed.next_handshake(before)

    def check(self, act: str, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(act, what, ok, detail))
        mark = "✔" if ok else "✘"
        print(f"  {mark} {what}" + (f"  ({detail})" if detail and not ok else ""), flush=True)
        return ok

    # ---- the acts ------------------------------------------------------------------------------
    def act1(self) -> None:
        print(
            "\n== Act 1: stateful resumption (session-ID cache, tickets off — BIG-IP's default)",
            flush=True,
        )
        s1 = self.out / "act1.sess"
        kind, ev = self.s_client(443, "-no_ticket", "-sess_out", str(s1))
        ev = ev or {}
        self.check(
            "1",
            "full handshake: client sent an empty session ID, server replied with a new one",
            kind == "New"
            and ev.get("outcome") == "full"
            and ev.get("offered") == "none"
            and len(ev.get("session_id") or "") == 64,
            str(ev),
        )
        first_sid = ev.get("session_id")
        kind, ev = self.s_client(443, "-no_ticket", "-sess_in", str(s1))
        ev = ev or {}
        self.check(
            "1",
            "abbreviated handshake by session ID: same ID echoed, client reports Reused",
            kind == "Reused"
            and ev.get("outcome") == "resumed"
            and ev.get("method") == "session_id"
            and ev.get("session_id") == first_sid,
            str(ev),
        )

    def act2(self) -> None:
        print(
            "\n== Act 2: stateless resumption (session tickets switched on live over the control channel)",
            flush=True,
        )
        print("  nf ctl tls.profile.set profile=clientssl session_ticket=true", flush=True)
        self.ctl("tls.profile.set", profile="clientssl", session_ticket=True)
        s2 = self.out / "act2.sess"
        kind, ev = self.s_client(443, "-sess_out", str(s2))
        ev = ev or {}
        self.check(
            "2",
            "full handshake issues a ticket (NewSessionTicket); ServerHello session ID is empty",
            kind == "New"
            and ev.get("outcome") == "full"
            and ev.get("tickets_issued") == 1
            and not ev.get("session_id"),
            str(ev),
        )
        kind, ev = self.s_client(443, "-sess_in", str(s2))
        ev = ev or {}
        self.check(
            "2",
            "abbreviated handshake by ticket: the client's session ID is echoed",
            kind == "Reused"
            and ev.get("method") == "ticket"
            and ev.get("reason") == "resumed"
            and bool(ev.get("session_id"))
            and ev.get("session_id") == ev.get("client_session_id"),
            str(ev),
        )

    def act3(self) -> None:
        print(
            "\n== Act 3: ticket key rotation (tickets valid 3 s so the old key is erased quickly)",
            flush=True,
        )
        self.ctl("tls.profile.set", profile="clientssl", session_ticket_timeout=3)
        s3 = self.out / "act3.sess"
        kind, ev = self.s_client(443, "-sess_out", str(s3))
        old_key = (ev or {}).get("ticket_key")
        print("  nf ctl tls.tickets.rotate profile=clientssl", flush=True)
        self.ctl("tls.tickets.rotate", profile="clientssl")
        kind, ev = self.s_client(443, "-sess_in", str(s3))
        ev = ev or {}
        self.check(
            "3",
            "after one rotation the old ticket still resumes and is re-issued with the new key",
            kind == "Reused"
            and ev.get("method") == "ticket"
            and ev.get("ticket_key") == old_key
            and ev.get("tickets_issued") == 1,
            str(ev),
        )
        print("  nf ctl tls.tickets.rotate profile=clientssl", flush=True)
        self.ctl("tls.tickets.rotate", profile="clientssl")
        assert self.feed is not None
        erased = self.feed.wait(
            lambda evs: any(
                t == "tls.tickets" and e.get("action") == "erased" and e.get("key") == old_key
                for t, e in evs
            ),
            8.0,
        )
        self.check(
            "3",
            "the key that sealed the old ticket is erased once its tickets have expired",
            erased,
        )
        kind, ev = self.s_client(443, "-sess_in", str(s3))
        ev = ev or {}
        self.check(
            "3",
            "the old ticket is then refused: full handshake, reason ticket_unknown_key",
            kind == "New"
            and ev.get("outcome") == "full"
            and ev.get("reason") == "ticket_unknown_key",
            str(ev),
        )
        self.ctl(
            "tls.profile.set", profile="clientssl", session_ticket=False, session_ticket_timeout=0
        )

    def act4(self) -> None:
        n = self.burst
        print(
            f"\n== Act 4: {n} handshakes per mode (Python ssl client in the namespace)", flush=True
        )
        assert self.feed is not None
        before = len(self.feed.handshakes())
        r = self.ns([sys.executable, "-c", BURST_CLIENT, VIP, str(self.ca), str(n)], timeout=300)
        rates: dict[str, tuple[int, int, float]] = {}
        for line in r.stdout.splitlines():
            mode, n_conns, n_reused, seconds = line.split()
            rates[mode] = (int(n_conns), int(n_reused), float(seconds))
        expected = before + 3 * n + 2
        self.feed.wait(lambda evs: sum(1 for t, _ in evs if t == "tls.handshake") >= expected, 20.0)
        burst = self.feed.handshakes()[before:]
        print(
            f"  {'mode':<12} {'conns':>6} {'reused':>7} {'client conn/s':>14} {'server cpu µs (median)':>24}"
        )
        for label in ("full", "session_id", "ticket"):
            count, reused, secs = rates.get(label, (0, 0, 0.0))
            if label == "full":
                cpus = [e["cpu_us"] for e in burst if e.get("outcome") == "full"]
            else:
                cpus = [e["cpu_us"] for e in burst if e.get("method") == label]
            med = report_mod.median([float(c) for c in cpus]) or 0.0
            rate = count / secs if secs else 0.0
            print(f"  {label:<12} {count:>6} {reused:>7} {rate:>14.1f} {med:>24.0f}", flush=True)
        self.check(
            "4",
            f"{n} full handshakes, none resumed",
            rates.get("full", (0, 1, 0))[1] == 0 and rates.get("full", (0,))[0] == n,
            r.stderr[-400:],
        )
        self.check(
            "4",
            f"{n} resumptions by session ID",
            rates.get("session_id", (0, 0, 0))[1] == n,
            r.stderr[-400:],
        )
        self.check(
            "4",
            f"{n} resumptions by ticket",
            rates.get("ticket", (0, 0, 0))[1] == n,
            r.stderr[-400:],
        )

    def summary(self) -> int:
        print("\n== nf report demo-out/events.msgpack", flush=True)
        assert self.feed is not None
        with self.feed.cond:
            records = list(self.feed.events)
        print(report_mod.render(report_mod.analyse(records)), flush=True)
        failed = [c for c in self.checks if not c.ok]
        print(
            f"\n{len(self.checks) - len(failed)} of {len(self.checks)} checks passed; "
            f"events, capture and key log in {self.out}/",
            flush=True,
        )
        return 1 if failed else 0


def run_demo(
    out: Path, *, quick: bool = False, netns: str | None = None, tap: str | None = None
) -> int:
    if os.geteuid() != 0:
        print(
            "nf demo: needs root (it creates a network namespace and a TAP device)", file=sys.stderr
        )
        return 1
    missing = [t for t in ("ip", "openssl") if shutil.which(t) is None]
    if missing:
        print(f"nf demo: missing tools: {', '.join(missing)} (run `make demo`)", file=sys.stderr)
        return 1
    tag = secrets.token_hex(3)
    demo = Demo(
        out,
        netns or f"lab-demo-{tag}",
        tap or f"tapdemo{tag}",
        quick=quick,
        burst=20 if quick else 200,
    )
    t0 = time.monotonic()
    try:
        try:
            demo.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"nf demo: {exc}", file=sys.stderr)
            return 1
        for act in (demo.act1, demo.act2, demo.act3, demo.act4):
            try:
                act()
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                demo.check(act.__name__, f"{act.__name__} ran to the end", False, str(exc))
        rc = demo.summary()
    finally:
        demo.stop()
    print(f"demo finished in {time.monotonic() - t0:.1f} s", flush=True)
    return rc
