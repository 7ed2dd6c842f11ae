"""A lab for end-to-end tests: ``nf run`` on a TAP in a namespace of its own, real kernel peers.

Each lab gets unique namespace/device names (so tests can run beside ``make demo``), waits for the
NF's ready line, and on teardown sends SIGTERM, checks the NF exited, and removes the namespace
even if the NF could not.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 30.0
NF = [sys.executable, "-m", "nf"]

BASE_CONFIG = """\
instance = "{instance}"

[interface]
kind = "tap"
name = "{tap}"
mac = "02:00:00:00:0a:10"
netns = "{netns}"
peer_address = ["192.0.2.1/24", "2001:db8::1/64"]

[[vips]]
address = "192.0.2.10"

[[vips]]
address = "2001:db8::10"
"""


@dataclass
class Lab:
    netns: str
    tap: str
    workdir: Path
    config_path: Path
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    control: str | None = None
    events: str | None = None

    def ns(
        self, argv: Sequence[str] | str, timeout: float = 60.0, check: bool = False, **kw
    ) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        """Run a command inside the lab namespace (the kernel side of the wire)."""
        args = shlex.split(argv) if isinstance(argv, str) else list(argv)
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            **kw,
        )

    def ns_popen(self, argv: Sequence[str], **kw) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], **kw)

    def nf(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run another ``nf`` sub-command (ctl, record, ...) from the root namespace."""
        return subprocess.run([*NF, *args], capture_output=True, text=True, timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def drain_output(self) -> str:
        return "".join(self.output)


def _start(lab: Lab) -> None:
    proc = subprocess.Popen(
        [*NF, "run", "-c", str(lab.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=lab.workdir,
    )
    lab.proc = proc
    assert proc.stdout is not None
    # Read the raw fd (not the text wrapper, whose buffer select() cannot see) until the ready
    # line; whatever follows stays in the pipe for later readers of proc.stdout.
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_TIMEOUT
    pending = b""
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.5):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(fd, 1)  # one byte at a time: never consume past the ready line
        if not chunk:
            break
        pending += chunk
        if chunk == b"\n":
            line = pending.decode(errors="replace")
            pending = b""
            lab.output.append(line)
            if line.startswith("nf: ready"):
                sel.close()
                return
    sel.close()
    proc.kill()
    rest = proc.stdout.read() if proc.stdout else ""
    raise RuntimeError(f"nf did not become ready:\n{lab.drain_output()}{rest}")


def _stop(lab: Lab) -> int | None:
    proc = lab.proc
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        lab.output.append(proc.stdout.read())
        proc.stdout.close()
    return proc.returncode


@contextmanager
def lab_nf(workdir: Path, extra_config: str = "", *, control: bool = False) -> Iterator[Lab]:
    """Start ``nf run`` on a fresh lab; always remove the namespace afterwards."""
    tag = secrets.token_hex(4)
    netns, tap = f"tnf-{tag}", f"tnf{tag}"
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = BASE_CONFIG.format(instance=f"t{tag}", tap=tap, netns=netns)
    lab = Lab(netns=netns, tap=tap, workdir=workdir, config_path=workdir / "lab.toml")
    if control:
        lab.control = f"ipc://{workdir}/control.sock"
        lab.events = f"ipc://{workdir}/events.sock"
        cfg += f'\n[control]\nendpoint = "{lab.control}"\nevents = "{lab.events}"\n'
    lab.config_path.write_text(cfg + extra_config)
    try:
        _start(lab)
        yield lab
    finally:
        try:
            rc = _stop(lab)
        finally:
            if os.path.exists(f"/var/run/netns/{netns}"):
                subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)
        # An NF that crashed during the test, or did not exit cleanly on SIGTERM, fails it
        # (unless the test already failed: that error stays the one reported).
        if sys.exc_info()[0] is None:
            assert rc in (None, 0), f"nf run exited with {rc}:\n{lab.drain_output()}"
