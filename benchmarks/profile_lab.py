"""Where tapnf's time goes under one workload: ``nf run`` on a bench lab, sampled by py-spy.

    python benchmarks/profile_lab.py WORKLOAD [--seconds 8] [--py-spy PATH] [--out DIR]

WORKLOAD is one of ``full`` (s_time -new, ECDSA), ``resumed_id`` (s_time -reuse, port 443),
``resumed_ticket`` (s_time -reuse, port 8443), ``icmp`` (ping -f), ``echo`` (bulk echo, port 7),
``tls_echo`` (bulk over TLS, port 4433). py-spy samples the NF process (``--nonblocking``) while
the client runs, counting only samples that hold the GIL (Python CPU work: waits in poll and
the kernel's work inside ``os.write`` to the TAP release it; see utime/stime for those); the collapsed stacks are written to OUT/WORKLOAD.txt and the top functions by
component (engine, TCP, host stack, timers, events, loop...), by self time and by inclusive
time are printed (percent of samples). The lab is removed on exit.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nf.bench import tcp  # noqa: E402
from nf.bench.handshake import ECDSA  # noqa: E402
from nf.bench.lab import VIP, BenchLab, new_workdir  # noqa: E402

TOP = 25
#: Component of a sample: the innermost frame matching one of these (file or function names).
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("timers", ("poll_at", "handle_timer", "next_expiry")),
    ("events", ("ZmqEventBus", "Bus.emit", "packb", "_emit", "send_multipart", "CaptureManager")),
    (
        "tls engine",
        ("server.py", "handshake.py", "record.py", "messages.py", "prf.py", "resumption.py")
        + ("store.py", "tickets.py", "x25519", "certs.py", "session.py"),
    ),
    ("tls stage", ("stage.py",)),
    ("tcp", ("stack.py", "endpoint.py", "sender.py", "receiver.py", "tcp.py", "cookie")),
    ("checksum/ip", ("checksum.py", "ipv4.py", "ipv6.py", "ethernet.py")),
    ("host stack", ("host.py", "arp.py", "icmp.py")),
    ("tap syscalls", ("read_frames", "write_frame")),
    ("loop/poll", ("loop.py", "poll.py")),
]


def component(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, keys in COMPONENTS:
            if any(k in frame for k in keys):
                return name
    return "other"


def workload(lab: BenchLab, name: str, seconds: int) -> None:
    if name in ("full", "resumed_id", "resumed_ticket"):
        mode = "-new" if name == "full" else "-reuse"
        port = 8443 if name == "resumed_ticket" else 443
        argv = ["openssl", "s_time", "-connect", f"{VIP}:{port}", "-tls1_2", "-cipher", ECDSA]
        lab.ns([*argv, mode, "-time", str(seconds)], timeout=seconds * 4 + 30, check=True)
    elif name == "icmp":
        lab.ns(["ping", "-f", "-q", "-w", str(seconds), VIP], timeout=seconds + 30)
    elif name in ("echo", "tls_echo"):
        tls = name == "tls_echo"
        port = 4433 if tls else 7
        deadline = seconds * 1.0
        spent = 0.0
        for _ in range(50):  # bounded: repeat 5 MB transfers until the time is used
            mbps = tcp.bulk(lab, VIP, port, 5_000_000, tls)
            spent += 5.0 / mbps
            if spent >= deadline:
                break
    else:
        raise SystemExit(f"unknown workload {name}")


def summarise(raw: Path) -> str:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    comps: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].rstrip(")") for f in stack.split(";")]
        total += n
        comps[component(frames)] += n
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples", "-- by component --"]
    out += [f"{n * 100 / total:5.1f}%  {c}" for c, n in comps.most_common()]
    out += ["-- self --"]
    out += [f"{n * 100 / total:5.1f}%  {f}" for f, n in self_t.most_common(TOP)]
    out += ["-- inclusive --"]
    out += [f"{n * 100 / total:5.1f}%  {f}" for f, n in incl.most_common(TOP)]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    ap.add_argument("--out", default="profile-out")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = out / f"{args.workload}.txt"
    with BenchLab(new_workdir()) as lab:
        lab.start_nf()
        lab.add_veth()
        workload(lab, args.workload, 1)  # warm-up (ARP, caches, first session)
        spy = subprocess.Popen(
            [args.py_spy, "record", "--nonblocking", "--gil", "-r", "200", "-f", "raw"]
            + ["-d", str(args.seconds), "-o", str(raw), "-p", str(lab.nf_pid())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = threading.Thread(target=workload, args=(lab, args.workload, args.seconds))
        client.start()
        client.join(timeout=args.seconds * 10 + 60)
        spy.wait(timeout=args.seconds + 60)
    print(summarise(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
