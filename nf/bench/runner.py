"""Runs the selected sub-benchmarks with one shared lab and returns the :class:`Report`."""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from nf.bench import cache, handshake, icmp, tcp, tls
from nf.bench.figures import Report
from nf.bench.lab import BenchLab, can_run_labs, new_workdir
from nf.bench.nginx import Nginx, nginx_missing

SUBS = ("handshake", "tls", "tcp", "icmp", "cache")
LAB_SUBS = ("handshake", "tcp", "icmp")
MIN_ROUNDS = 3


@dataclass(frozen=True)
class Plan:
    """Sizes of one run; ``quick`` is the CI smoke size."""

    rounds: int = 5
    handshake_seconds: int = 3
    tls_handshakes: int = 200
    tcp_bytes: int = 20_000_000
    icmp_count: int = 20_000
    cache_sessions: int = 100_000

    @classmethod
    def quick(cls, rounds: int = MIN_ROUNDS) -> Plan:
        return cls(rounds, 1, 20, 2_000_000, 2_000, 100_000)


def run(subs: tuple[str, ...], plan: Plan, log: Callable[[str], None] = lambda s: None) -> Report:
    report = Report()
    report.info = {
        "plan": plan.__dict__,
        "subs": list(subs),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "started": time.time(),
    }
    in_proc = [s for s in subs if s not in LAB_SUBS]
    for sub in in_proc:
        log(f"nf bench: {sub} ...")
        if sub == "tls":
            tls.run(report, plan.rounds, plan.tls_handshakes)
        elif sub == "cache":
            cache.run(report, plan.rounds, plan.cache_sessions)
    lab_subs = [s for s in subs if s in LAB_SUBS]
    if lab_subs:
        why = can_run_labs()
        if why is not None:
            for sub in lab_subs:
                report.skipped[sub] = why
        else:
            _run_lab(lab_subs, plan, report, log)
    report.info["finished"] = time.time()
    report.info["loadavg_end"] = os.getloadavg()
    return report


def _run_lab(subs: list[str], plan: Plan, report: Report, log: Callable[[str], None]) -> None:
    no_nginx = nginx_missing()
    with BenchLab(new_workdir()) as lab:
        log(f"nf bench: lab {lab.netns} (workdir {lab.workdir}, kept if the run fails)")
        lab.start_nf()
        lab.add_veth()
        lab.start_kernel_echo(tcp.ECHO_PORT)
        nginx = None
        if no_nginx is None and ("handshake" in subs or "tcp" in subs):
            nginx = Nginx(lab).start()
        elif no_nginx is not None:
            report.info["nginx"] = no_nginx
        try:
            for sub in subs:
                log(f"nf bench: {sub} ...")
                if sub == "handshake":
                    handshake.run(lab, nginx, report, plan.rounds, plan.handshake_seconds)
                elif sub == "tcp":
                    tcp.run(lab, nginx is not None, report, plan.rounds, plan.tcp_bytes)
                elif sub == "icmp":
                    icmp.run(lab, report, plan.rounds, plan.icmp_count)
        finally:
            if nginx is not None:
                nginx.stop()
    # Reached only when every sub-benchmark ran: the logs of a failed run stay for a post-mortem.
    shutil.rmtree(lab.workdir, ignore_errors=True)


__all__ = ["MIN_ROUNDS", "SUBS", "Plan", "run"]
