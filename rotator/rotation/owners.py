"""Who holds a lease, and whether that worker is certainly dead.

A worker's lease owner is ``host:pid:start:machine:boot:nonce`` — the host name, the
process ID, the process's start time (clock ticks since boot, from ``/proc``), short
forms of this machine's ``/etc/machine-id`` and of this boot's ID, and a random nonce.
Another worker may take a lease at once, without waiting out a full lease period, only
when the owner is *certainly* dead:

* same host name and boot ID, and no process with that PID and start time: it exited
  (killed by the OOM killer, SIGKILLed, crashed);
* same host name and machine ID, and another boot ID: the machine rebooted since.

Anything else — another host, a Lambda invocation, an owner written by another tool, a
machine whose IDs cannot be read — is not known to be dead, and its lease is taken over
only after a full lease period without a sign of life (``Driver``). The identity relies
on host names being unique among the workers sharing a journal.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rotator.model import new_id

_PROC = Path("/proc")


@dataclass(frozen=True, kw_only=True)
class Owner:
    """A parsed lease owner (``host:pid:start:machine:boot:nonce``)."""

    host: str
    pid: int
    start: str
    machine: str
    boot: str

    @classmethod
    def parse(cls, owner: str) -> Owner | None:
        """The owner ``owner`` names, or None if it is not in rotator's format."""
        parts = owner.split(":")
        if len(parts) != 6 or not parts[1].isdigit():
            return None
        host, pid, start, machine, boot, _nonce = parts
        return cls(host=host, pid=int(pid), start=start, machine=machine, boot=boot)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def process_start(pid: int, proc: Path = _PROC) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None if there is no
    such process, "" if it cannot be told (no ``/proc``)."""
    if not proc.is_dir():
        return ""
    stat = _read(proc / str(pid) / "stat")
    if not stat:
        return None
    # The command name (2nd field) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


@cache
def _machine() -> str:
    return _read(Path("/etc/machine-id"))[:12]


@cache
def _boot() -> str:
    return _read(_PROC / "sys" / "kernel" / "random" / "boot_id").replace("-", "")[:12]


def this_worker() -> str:
    """A new lease owner for this process."""
    pid = os.getpid()
    start = process_start(pid) or ""
    return f"{socket.gethostname()}:{pid}:{start}:{_machine()}:{_boot()}:{new_id('w')}"


def certainly_dead(owner: str, *, proc: Path = _PROC) -> bool:
    """True only if ``owner`` is a worker of this machine that is certainly gone."""
    found = Owner.parse(owner)
    machine, boot = _machine(), _boot()
    if found is None or found.host != socket.gethostname() or not boot:
        return False
    if found.boot != boot:
        # Rebooted since, if it is this machine (its machine ID says so); else unknown.
        return bool(machine) and found.machine == machine and bool(found.boot)
    if not found.start:
        return False
    running = process_start(found.pid, proc)
    if running == "":
        return False  # cannot be told
    return running is None or running != found.start
