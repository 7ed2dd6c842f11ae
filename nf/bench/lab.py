"""The bench lab: ``nf run`` on a TAP in a namespace of its own, plus a veth pair in the same
namespace for reference servers (nginx, a kernel echo) and helpers to run clients inside it.

Names are unique per run (``nfb-XXXXXX``), every process the lab starts is stopped by its id, and
the namespace is deleted on exit even when ``nf run`` could not delete it.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nf.bench.procs import die_with_parent, start_logged

ROOT = Path(__file__).resolve().parent.parent.parent
LAB_CONFIG = ROOT / "configs" / "lab.toml"
CERT_DIR = LAB_CONFIG.parent / "certs"
VIP = "192.0.2.10"  # tapnf's address on the TAP
PEER = "192.0.2.1"  # the kernel side of the TAP
REF_A, REF_B = "198.51.100.1", "198.51.100.2"  # the veth pair; reference servers bind REF_B
READY_TIMEOUT = 30.0

KERNEL_ECHO = r"""
import selectors, socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1024)
srv.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is srv:
            c, _ = srv.accept()
            c.setblocking(True)
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            data = s.recv(262144)
        except ConnectionError:
            data = b""
        if data:
            s.sendall(data)
        else:
            sel.unregister(s)
            s.close()
"""


class LabError(RuntimeError):
    """The lab could not be set up (message for the user)."""


def can_run_labs() -> str | None:
    """None when this machine can run TAP labs, else why not."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) for TAP devices and namespaces"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    return None


def wait_for_line(path: Path, prefix: str, proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Poll ``path`` (a process's log) until a line starts with ``prefix``; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        if any(line.startswith(prefix) for line in text.splitlines()):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM this one process, then SIGKILL it if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class BenchLab:
    """One lab: namespace, TAP (owned by ``nf run``), veth pair, started processes."""

    workdir: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    nf_proc: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return f"nfb-{self.tag}"

    @property
    def tap(self) -> str:
        return f"nfb{self.tag}"

    @property
    def control(self) -> str:
        return f"ipc://{self.workdir}/control.sock"

    @property
    def events(self) -> str:
        return f"ipc://{self.workdir}/events.sock"

    # ---- commands inside the namespace --------------------------------------------------------
    def ns(
        self, argv: Sequence[str] | str, timeout: float = 120.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        args = shlex.split(argv) if isinstance(argv, str) else list(argv)
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    def ns_popen(self, argv: Sequence[str], log: Path | None = None) -> subprocess.Popen[bytes]:
        return start_logged(["ip", "netns", "exec", self.netns, *argv], log, self.procs.append)

    def python_json(self, script: str, *args: object, timeout: float = 300.0) -> dict[str, Any]:
        """Run a Python client inside the namespace; its last stdout line is JSON."""
        r = self.ns([sys.executable, "-c", script, *map(str, args)], timeout=timeout)
        lines = r.stdout.strip().splitlines()
        if r.returncode != 0 or not lines:
            raise LabError(f"client failed ({r.returncode}): {r.stderr.strip()[-400:]}")
        out: dict[str, Any] = json.loads(lines[-1])
        return out

    # ---- set-up ---------------------------------------------------------------------------------
    def start_nf(self) -> None:
        sets = {
            "instance": f"bench{self.tag}",
            "interface.name": self.tap,
            "interface.netns": self.netns,
            "control.endpoint": self.control,
            "control.events": self.events,
        }
        argv = [sys.executable, "-m", "nf", "run", "-c", str(LAB_CONFIG)]
        for key, value in sets.items():
            argv += ["--set", f"{key}={json.dumps(value)}"]
        log = self.workdir / "nf.log"
        proc = start_logged(argv, log, self._keep_nf, cwd=ROOT)
        if not wait_for_line(log, "nf: ready", proc, READY_TIMEOUT):
            stop_process(self.nf_proc)
            raise LabError("nf run did not become ready:\n" + log.read_text(errors="replace"))

    def _keep_nf(self, proc: subprocess.Popen[bytes]) -> None:
        self.nf_proc = proc

    def add_veth(self) -> None:
        a, b = f"nfbv{self.tag}a", f"nfbv{self.tag}b"
        for cmd in (
            "ip link set lo up",
            f"ip link add {a} type veth peer name {b}",
            f"ip addr add {REF_A}/24 dev {a}",
            f"ip addr add {REF_B}/24 dev {b}",
            f"ip link set {a} up",
            f"ip link set {b} up",
        ):
            r = self.ns(cmd, timeout=10)
            if r.returncode != 0:
                raise LabError(f"{cmd}: {r.stderr.strip()}")

    def start_kernel_echo(self, port: int = 7007) -> subprocess.Popen[bytes]:
        log = self.workdir / f"echo{port}.log"
        proc = self.ns_popen([sys.executable, "-c", KERNEL_ECHO, REF_B, str(port)], log)
        if not wait_for_line(log, "ready", proc, 10.0):
            raise LabError("kernel echo server did not start")
        return proc

    def nf_pid(self) -> int:
        if self.nf_proc is None:
            raise LabError("nf run is not running")
        return self.nf_proc.pid

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        stop_process(self.nf_proc, timeout=15)
        if os.path.exists(f"/var/run/netns/{self.netns}"):
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=10)

    def __enter__(self) -> BenchLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="nf-bench-"))


__all__ = [
    "PEER",
    "REF_B",
    "VIP",
    "BenchLab",
    "LabError",
    "can_run_labs",
    "new_workdir",
    "stop_process",
]
