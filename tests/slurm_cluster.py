"""A real single-node SLURM cluster on this machine, for tests: Debian's slurmctld,
slurmd and munge, started by hand (no systemd) and stopped by their pids.

The node pretends to be a GPU node: its GPUs are character devices made with mknod
and declared in gres.conf, so SLURM hands each ``--gpus=1`` job its own
``CUDA_VISIBLE_DEVICES``, and its CPUs and memory come from slurm.conf
(``SlurmdParameters=config_overrides``), so a profile written for real GPU nodes runs
unchanged. The configuration must sit at /etc/slurm/slurm.conf: the SLURM executor
plugin's job step drops SLURM_CONF before its inner srun. A configuration found there
that this module did not write is never touched.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MARKER = "# written by i2peval tests/slurm_cluster.py"
PROGRAMS = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "sbatch", "squeue", "scontrol", "scancel")
MUNGE_SOCKET_DIR = Path("/run/munge")


class SlurmUnavailable(Exception):
    """SLURM cannot be started on this machine; the message says why."""


def unavailable_reason() -> str | None:
    """Why a test cluster cannot be started here, or None when it can."""
    if os.geteuid() != 0:
        return "starting SLURM daemons needs root"
    missing = [program for program in PROGRAMS if shutil.which(program) is None]
    if missing:
        return f"SLURM is not installed (missing {', '.join(missing)}; `make test` installs it as root on Debian)"
    if SLURM_CONF.exists() and MARKER not in SLURM_CONF.read_text():
        return f"{SLURM_CONF} belongs to a real SLURM installation; the test does not replace it"
    return None


class SingleNodeSlurm:
    """Start with `start()`, stop with `stop()`; state, logs and pid files live in `root`."""

    def __init__(self, root: Path, partition: str = "gpu", gpus: int = 2, cpus: int = 16, memory_mb: int = 128_000):
        self.root = root
        self.partition = partition
        self.gpus = gpus
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.host = socket.gethostname()
        self.started_munged: int | None = None

    def _conf(self) -> str:
        return "\n".join(
            [
                MARKER,
                "ClusterName=i2peval-test",
                f"SlurmctldHost={self.host}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU_Memory",
                "DefMemPerCPU=1000",
                "GresTypes=gpu",
                "MinJobAge=600",
                "ReturnToService=2",
                "SlurmdParameters=config_overrides",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                f"StateSaveLocation={self.root / 'state'}",
                f"SlurmdSpoolDir={self.root / 'spool'}",
                f"SlurmctldLogFile={self.root / 'slurmctld.log'}",
                f"SlurmdLogFile={self.root / 'slurmd.log'}",
                f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                f"NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory_mb} "
                f"Gres=gpu:testgpu:{self.gpus} State=UNKNOWN",
                f"PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def start(self) -> None:
        """Start munge (unless running), slurmctld and slurmd; wait until the node is idle."""
        reason = unavailable_reason()
        if reason:
            raise SlurmUnavailable(reason)
        stop_leftover_daemons()
        for folder in ("state", "spool", "devices"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        devices = self.root / "devices"
        for index in range(self.gpus):
            # a character device like /dev/null: enough for slurmd to hand it out as a GPU
            subprocess.run(["mknod", str(devices / f"nvidia{index}"), "c", "1", "3"], check=True)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(self._conf())
        GRES_CONF.write_text(
            f"{MARKER}\nAutoDetect=off\n"
            f"NodeName={self.host} Name=gpu Type=testgpu Count={self.gpus} File={devices}/nvidia[0-{self.gpus - 1}]\n"
        )
        self._start_munge()
        subprocess.run(["/usr/sbin/slurmctld"], check=True)
        self._wait("slurmctld answering", lambda: "UP" in _output(["scontrol", "ping"]), self.root / "slurmctld.log")
        subprocess.run(["/usr/sbin/slurmd"], check=True)
        self._wait(
            "the node idle",
            lambda: _output(["sinfo", "-h", "-n", self.host, "-o", "%T"]).strip() == "idle",
            self.root / "slurmd.log",
        )

    def _start_munge(self) -> None:
        if _munge_works():
            return
        MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True)
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        self.started_munged = int((MUNGE_SOCKET_DIR / "munged.pid").read_text())
        self._wait("munged answering", _munge_works, None)

    def _wait(self, what: str, condition, log: Path | None, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                tail = log.read_text()[-3000:] if log and log.exists() else ""
                raise RuntimeError(f"SLURM test cluster: no {what} after {timeout:.0f} s\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel every job, stop the daemons this cluster started, remove its configuration."""
        if shutil.which("scancel") and SLURM_CONF.exists():
            subprocess.run(["scancel", "--user", getpass.getuser()], capture_output=True)
            deadline = time.monotonic() + 30
            while _output(["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING"]).strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld"):
            _stop_pid_file(self.root / f"{name}.pid")
        if self.started_munged:
            _stop_pid(self.started_munged)
        for conf in (SLURM_CONF, GRES_CONF):
            if conf.exists() and MARKER in conf.read_text():
                conf.unlink()


def stop_leftover_daemons() -> None:
    """Stop the daemons of an earlier test cluster that was not stopped (its run was killed)."""
    if not SLURM_CONF.exists() or MARKER not in SLURM_CONF.read_text():
        return
    for line in SLURM_CONF.read_text().splitlines():
        if line.startswith(("SlurmdPidFile=", "SlurmctldPidFile=")):
            _stop_pid_file(Path(line.split("=", 1)[1]))


def _stop_pid_file(pid_file: Path) -> None:
    if pid_file.exists():
        _stop_pid(int(pid_file.read_text()))


def _stop_pid(pid: int, timeout: float = 15) -> None:
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            break
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _output(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True).stdout


def _munge_works() -> bool:
    if not (MUNGE_SOCKET_DIR / "munge.socket.2").exists():
        return False
    credential = subprocess.run(["munge", "-n"], capture_output=True)
    return (
        credential.returncode == 0
        and subprocess.run(["unmunge"], input=credential.stdout, capture_output=True).returncode == 0
    )
