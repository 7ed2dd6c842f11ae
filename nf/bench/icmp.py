"""``nf bench icmp``: ``ping -f`` round trips per second through tapnf's host stack, against a
minimal struct-based responder on the same kind of TAP (``benchmarks/icmp_floor.py serve``, in a
namespace of its own with the same addresses) and against a kernel address in the lab namespace.
Beside the round-trip rate (wall clock, sensitive to scheduling on a busy machine) each round
reports the responder's CPU per answered echo (utime+stime of ``nf run`` vs the floor process).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from nf.bench.figures import Report
from nf.bench.lab import PEER, ROOT, VIP, BenchLab, LabError, stop_process, wait_for_line
from nf.bench.procs import cpu_seconds, die_with_parent, start_logged

FLOOR_SCRIPT = ROOT / "benchmarks" / "icmp_floor.py"
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received.*?time (\d+)ms")


def parse_ping(stdout: str) -> tuple[int, int, float]:
    """(transmitted, received, seconds) from ``ping -q`` output."""
    m = _SUMMARY.search(stdout)
    if m is None:
        raise LabError(f"unexpected ping output: {stdout[-400:]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3)) / 1000.0


def flood(netns: str, address: str, count: int, pid: int | None = None) -> tuple[float, float]:
    """One ``ping -f -c count`` (bounded by a deadline): round trips per second, and the CPU µs
    per answered echo of the responder ``pid`` (nan without one)."""
    deadline = max(5, count // 500)
    c0 = cpu_seconds([pid]) if pid is not None else 0.0
    r = subprocess.run(
        ["ip", "netns", "exec", netns, "ping", "-f", "-q", "-c", str(count), "-w", str(deadline)]
        + [address],
        capture_output=True,
        text=True,
        timeout=deadline + 30,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )
    cpu = cpu_seconds([pid]) - c0 if pid is not None else float("nan")
    sent, received, secs = parse_ping(r.stdout + r.stderr)
    if received < 0.9 * count:
        raise LabError(f"ping -f {address}: {received}/{sent} answered")
    return (received / secs if secs else 0.0), cpu / received * 1e6


class Floor:
    """The minimal responder on a TAP in namespace ``nfbf-<tag>``."""

    def __init__(self, lab: BenchLab) -> None:
        self.netns = f"nfbf-{lab.tag}"
        self.tap = f"nfbf{lab.tag}"
        self.log = lab.workdir / "floor.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Floor:
        # The namespace is made here, not by the floor's TapPort: pyroute2's netns.create has
        # been seen to return before /var/run/netns/<name> exists (the move then fails).
        made = subprocess.run(["ip", "netns", "add", self.netns], capture_output=True, timeout=10)
        if made.returncode != 0:
            raise LabError(f"ip netns add {self.netns}: {made.stderr.decode().strip()}")
        argv = [sys.executable, str(FLOOR_SCRIPT), "serve", "--tap", self.tap]
        argv += [
            "--netns",
            self.netns,
            "--ip",
            VIP,
            "--peer",
            f"{PEER}/24",
            "--seconds",
            "1800",
            "--own-netns",
        ]
        proc = start_logged(argv, self.log, self._keep)
        if not wait_for_line(self.log, "floor: ready", proc, 20.0):
            self.stop()
            raise LabError(f"icmp floor did not start: {self.log.read_text(errors='replace')}")
        return self

    def _keep(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def stop(self) -> None:
        stop_process(self.proc)
        if os.path.exists(f"/var/run/netns/{self.netns}"):
            r = subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=10)
            if r.returncode != 0:
                print(
                    f"nf bench: ip netns del {self.netns}: {r.stderr.decode().strip()}",
                    file=sys.stderr,
                )


def run(lab: BenchLab, report: Report, rounds: int, count: int) -> None:
    floor_row = report.row("icmp", "ping -f", "rtt/s", "struct floor", target=0.75)
    cpu_row = report.row(
        "icmp", "ping -f", "CPU µs/echo", "struct floor", better="lower", target=1 / 0.75
    )
    kernel_row = report.row("icmp", "ping -f", "rtt/s", "kernel addr")
    floor = Floor(lab)
    try:
        floor.start()
        assert floor.proc is not None
        flood(lab.netns, VIP, min(count, 200))  # ARP resolved, caches warm
        flood(floor.netns, VIP, min(count, 200))
        for _ in range(rounds):
            ours, ours_cpu = flood(lab.netns, VIP, count, lab.nf_pid())
            theirs, theirs_cpu = flood(floor.netns, VIP, count, floor.proc.pid)
            floor_row.add(ours, theirs)
            cpu_row.add(ours_cpu, theirs_cpu)
            kernel_row.add(ours, flood(lab.netns, PEER, count)[0])
    finally:
        floor.stop()


__all__ = ["Floor", "flood", "parse_ping", "run"]
