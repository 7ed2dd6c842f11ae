"""Process accounting from /proc: CPU seconds (utime + stime) of a server and its children.

The server CPU per connection that ``nf bench handshake`` reports is the growth of these
counters across a client run divided by the connections the client completed. Resolution is one
clock tick (usually 10 ms), so runs last at least a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MAX_DESCENDANTS = 64
PR_SET_PDEATHSIG = 1


def parse_stat(text: str) -> tuple[int, int]:
    """(utime, stime) in clock ticks from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may hold spaces or ')', so fields are
    counted from the last ')'.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[11]), int(rest[12])


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), [] when it is gone."""
    out: list[int] = []
    task = Path(f"/proc/{pid}/task")
    try:
        tids = [t.name for t in task.iterdir()]
    except OSError:
        return out
    for tid in tids:
        try:
            out += [int(c) for c in (task / tid / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and its descendants (bounded), parents first."""
    seen = [pid]
    i = 0
    while i < len(seen) and len(seen) < MAX_DESCENDANTS:
        seen += [c for c in children(seen[i]) if c not in seen]
        i += 1
    return seen[:MAX_DESCENDANTS]


def cpu_seconds(pids: list[int]) -> float:
    """Sum of utime + stime of ``pids`` in seconds; a vanished process counts 0."""
    ticks = 0
    for pid in pids:
        try:
            u, s = parse_stat(Path(f"/proc/{pid}/stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        ticks += u + s
    return ticks / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (nginx: master + worker)."""
    return cpu_seconds(descendants(pid))


_DEFERRED = {signal.SIGINT, signal.SIGTERM}


def die_with_parent() -> None:
    """``preexec_fn`` for the servers a bench starts: the kernel sends them SIGTERM when the bench
    process dies (``PR_SET_PDEATHSIG``), so an interrupted run cannot leave one behind even if it
    was interrupted before it learnt the child's pid. Also unblocks the signals that
    ``signals_deferred`` holds back (a blocked mask would be inherited across exec)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _DEFERRED)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the ``with`` body: start a child and record it inside.

    A bench turns SIGTERM into ``KeyboardInterrupt``; raised between fork and the assignment of the
    ``Popen`` it orphans a child the clean-up never hears of (seen in CI: the ICMP floor then
    re-created the namespace the clean-up had just deleted). Deferred, the signal is raised when
    the block ends, after the caller holds the process, and its clean-up stops and waits for it.
    Children unblock the signals again in ``die_with_parent`` (the mask survives exec).
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_logged(
    argv: Sequence[str],
    log: Path | None,
    keep: Callable[[subprocess.Popen[bytes]], None],
    **kw: Any,
) -> subprocess.Popen[bytes]:
    """Start a bench child (stdout+stderr to ``log`` or nowhere, no stdin, dies with the bench)
    and hand it to ``keep`` while SIGINT/SIGTERM are still held back, so the caller's clean-up
    knows it before an interrupt can unwind (see ``signals_deferred``)."""
    out: Any = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        with signals_deferred():
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                **kw,
            )
            keep(proc)
    finally:
        if log is not None:
            out.close()
    return proc


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process in bytes (from /proc/<pid>/statm)."""
    fields = Path(f"/proc/{pid}/statm").read_text().split()
    return int(fields[1]) * PAGE


__all__ = [
    "die_with_parent",
    "cpu_seconds",
    "descendants",
    "parse_stat",
    "rss_bytes",
    "signals_deferred",
    "start_logged",
    "tree_cpu_seconds",
]
