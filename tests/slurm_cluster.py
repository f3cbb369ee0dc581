"""A real one-node SLURM for the tests: slurmctld and slurmd of this machine's SLURM
(Debian: apt-get install slurm-wlm), configured in a temporary directory, on free ports.

Authentication is auth/none where the installed SLURM has that plugin (up to 23.02), else
MUNGE: a munged of our own with a generated key and its own socket (no system service is
touched). Jobs run as the calling user, which must be root (slurmd runs as root). Anything
that keeps the daemons from bringing the node up is a :class:`SlurmUnavailable` whose
message says why (the tests skip on it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

_PLUGIN_DIRS = ("/usr/lib/*/slurm-wlm", "/usr/lib*/slurm", "/usr/local/lib*/slurm")


class SlurmUnavailable(Exception):
    """SLURM cannot be started here; the message says why."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _has_plugin(name: str) -> bool:
    return any(glob.glob(f"{d}/{name}.so") for d in _PLUGIN_DIRS)


def _node_line(host: str) -> str:
    """``slurmd -C``'s NodeName line for this host, RealMemory less a margin (a node whose
    memory is below its configured RealMemory is drained)."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("NodeName=")), "")
    if not line:
        raise SlurmUnavailable(f"slurmd -C printed no NodeName line: {out.strip()[:200]!r}")
    fields = dict(f.split("=", 1) for f in line.split())
    fields["NodeName"] = host
    fields["RealMemory"] = str(max(int(fields.get("RealMemory", "1024")) - 512, 256))
    return " ".join(f"{k}={v}" for k, v in fields.items() if k != "UpTime")


def _start_munge(d: Path) -> str:
    munged = shutil.which("munged") or ("/usr/sbin/munged" if os.path.exists("/usr/sbin/munged") else None)
    if munged is None:
        raise SlurmUnavailable("this SLURM has no auth/none plugin and munged is not installed")
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = d / "munge.socket"
    cmd = [munged, "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={d / 'munged.pid'}",
           f"--log-file={d / 'munged.log'}", f"--seed-file={d / 'munged.seed'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise SlurmUnavailable(f"munged failed: {r.stderr.strip()[:300]}")
    return str(sock)


def _stop_pidfile(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(path.read_text().strip()), 15)


def _tail(path: Path, n: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    return ""


@contextlib.contextmanager
def slurm_cluster(d: Path, *, timeout: float = 60) -> Iterator[dict[str, str]]:
    """Start SLURM with its state under ``d``; yield the environment variables that point
    clients (sbatch, squeue, dask-jobqueue) at it; stop the daemons and jobs afterwards."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise SlurmUnavailable("needs root (slurmd runs as root)")
    for tool in ("slurmctld", "slurmd", "sbatch", "sinfo", "scancel"):
        if shutil.which(tool) is None:
            raise SlurmUnavailable(f"{tool} not installed (Debian: apt-get install slurm-wlm)")
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "log"):
        (d / sub).mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    auth = ["AuthType=auth/none", "CredType=cred/none"]
    munge_pid = d / "munged.pid"
    if not (_has_plugin("auth_none") and _has_plugin("cred_none")):
        sock = _start_munge(d)
        auth = ["AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={sock}"]
    conf = d / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=vefftest", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root", *auth,
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
        f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd.pid'}",
        f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "ReturnToService=2", "SchedulerType=sched/backfill", "KillWait=5",
        "SlurmctldTimeout=30", "SlurmdTimeout=30", "MessageTimeout=10",
        _node_line(host) + " State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n")
    env = {"SLURM_CONF": str(conf)}
    full = dict(os.environ, **env)
    procs = []
    try:
        for cmd, log in ((["slurmctld", "-D", "-i"], "slurmctld.out"), (["slurmd", "-D"], "slurmd.out")):
            with open(d / "log" / log, "w") as out:
                procs.append(subprocess.Popen(cmd, env=full, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
            time.sleep(0.5)
        t0 = time.monotonic()
        state = ""
        while state != "idle":
            dead = [p.args[0] for p in procs if p.poll() is not None]
            if dead or time.monotonic() - t0 > timeout:
                why = f"{dead[0]} exited" if dead else f"node not idle after {timeout:.0f} s (state {state!r})"
                raise SlurmUnavailable(f"SLURM did not start: {why}: "
                                       f"{_tail(d / 'log' / 'slurmctld.out')} {_tail(d / 'log' / 'slurmd.out')}")
            r = subprocess.run(["sinfo", "-h", "-n", host, "-o", "%t"], env=full, capture_output=True,
                               text=True, timeout=30)
            state = r.stdout.strip()
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--partition=debug"], env=full, capture_output=True, timeout=30)
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        _stop_pidfile(munge_pid)
