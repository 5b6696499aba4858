"""The lab's container runtime: a pod's containers are real processes inside its network namespace.

Images are not pulled: a container's `command`/`args` run with this machine's binaries, through
`ip netns exec` so that they (and exec'd commands) see the pod's own /etc/resolv.conf. A container
with neither runs `sleep infinity`. An image without a shell (distroless, CoreDNS's: see
`SHELL_LESS_IMAGES`) can exec only its own binary: anything else fails as a missing binary, in
`kubectl exec` and in exec probes alike. Called by the kubelets (start, terminate, stop, exits)
and by the lab API server (exec, logs) through the `exec`/`log_path` protocol.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from netdoctor.lab import clock

IDLE_COMMAND = ["sleep", "infinity"]
# Registries whose images carry one binary and nothing else: no shell, no cat, no ss.
SHELL_LESS_IMAGES = ("gcr.io/distroless/", "registry.k8s.io/coredns/")


@dataclass
class ContainerProcess:
    name: str
    process: subprocess.Popen
    restarts: int = 0
    exit_code: int | None = None


@dataclass
class PodProcesses:
    """What runs for one pod: where (netns, scratch dir) and which containers."""

    netns: str
    workdir: Path
    containers: dict[str, ContainerProcess] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerExit:
    pod_uid: str
    container: str
    exit_code: int


def container_argv(container: dict) -> list[str]:
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    return argv or list(IDLE_COMMAND)


def executable(container: dict, binary: str, path: str) -> bool:
    """Whether `binary` can be exec'd in this container: found in PATH, and for a shell-less
    image only the very file its own command runs."""
    found = shutil.which(binary, path=path)
    if found is None:
        return False
    if not str(container.get("image") or "").startswith(SHELL_LESS_IMAGES):
        return True
    own = shutil.which(container_argv(container)[0], path=path)
    return own is not None and os.path.realpath(found) == os.path.realpath(own)


class PodRuntime:
    def __init__(self, state_dir: Path):
        self._pods_dir = state_dir / "pods"
        self._pods: dict[str, PodProcesses] = {}
        self._lock = threading.Lock()
        self._clock_bin = state_dir / "clock-bin"  # the tcpdump of a node whose clock is off
        self.clocks: dict[str, float] = {}  # node -> seconds its clock runs ahead (behind: negative)

    # --- lifecycle, called by the controller -------------------------------------------------
    def register(self, pod_uid: str, netns: str) -> PodProcesses:
        workdir = self._pods_dir / pod_uid
        workdir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            return self._pods.setdefault(pod_uid, PodProcesses(netns, workdir))

    def start_container(self, pod: dict, container: dict) -> None:
        uid, name = pod["metadata"]["uid"], container["name"]
        procs = self._pods[uid]
        with open(procs.workdir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", procs.netns, *container_argv(container)],
                cwd=container.get("workingDir") or procs.workdir,
                env=self._environment(pod, container, procs.workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        previous = procs.containers.get(name)
        restarts = previous.restarts + 1 if previous else 0
        procs.containers[name] = ContainerProcess(name, process, restarts)

    def started(self, pod_uid: str) -> dict[str, ContainerProcess]:
        procs = self._pods.get(pod_uid)
        return dict(procs.containers) if procs else {}

    def is_registered(self, pod_uid: str) -> bool:
        return pod_uid in self._pods

    def stop_pod(self, pod_uid: str) -> None:
        with self._lock:
            procs = self._pods.pop(pod_uid, None)
        if procs is None:
            return
        for container in procs.containers.values():
            _kill_group(container.process)
        shutil.rmtree(procs.workdir, ignore_errors=True)

    def stop_container(self, pod_uid: str, name: str) -> None:
        container = self._pods[pod_uid].containers.get(name)
        if container:
            _kill_group(container.process)

    def terminate(self, pod_uid: str) -> None:
        """SIGTERM to every container still running (the start of a graceful stop)."""
        procs = self._pods.get(pod_uid)
        for container in procs.containers.values() if procs else ():
            if container.process.poll() is None:
                _signal_group(container.process, signal.SIGTERM)

    def all_exited(self, pod_uid: str) -> bool:
        procs = self._pods.get(pod_uid)
        return procs is None or all(c.process.poll() is not None for c in procs.containers.values())

    def reap(self) -> list[ContainerExit]:
        """Containers that exited since the last call."""
        exits = []
        for uid, procs in list(self._pods.items()):
            for container in procs.containers.values():
                code = container.process.poll()
                if code is not None and container.exit_code is None:
                    container.exit_code = code
                    exits.append(ContainerExit(uid, container.name, code))
        return exits

    def workdir(self, pod_uid: str) -> Path:
        return self._pods[pod_uid].workdir

    # --- the API server's protocol ------------------------------------------------------------
    def exec(self, pod: dict, container: str | None, command: list[str], stdin: bool, tty: bool) -> subprocess.Popen:
        procs = self._pods.get(pod["metadata"]["uid"])
        if procs is None:
            raise ValueError(f"pod {pod['metadata']['name']} has no running sandbox")
        spec = _find_container(pod, container)
        if not command or not executable(spec, command[0], self._path()):
            raise FileNotFoundError(command[0] if command else "")
        return subprocess.Popen(
            ["ip", "netns", "exec", procs.netns, *command],
            cwd=spec.get("workingDir") or procs.workdir,
            env=self._environment(pod, spec, procs.workdir),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def log_path(self, pod: dict, container: str | None) -> str | None:
        procs = self._pods.get(pod["metadata"]["uid"])
        if procs is None:
            return None
        name = container or pod["spec"]["containers"][0]["name"]
        path = procs.workdir / f"{name}.log"
        return str(path) if path.exists() else None

    def _environment(self, pod: dict, container: dict, workdir: Path) -> dict[str, str]:
        hostname = pod["spec"].get("hostname") or pod["metadata"]["name"]
        # A container's /tmp is its own and goes with it: here the pod's directory stands for it.
        env = {"PATH": self._path(), "HOME": str(workdir), "TMPDIR": str(workdir), "HOSTNAME": hostname}
        offset = self.clocks.get(pod["spec"].get("nodeName") or "")
        if offset:  # what this node captures carries its own clock (netdoctor.lab.clock)
            real = shutil.which("tcpdump", path=env["PATH"]) or "tcpdump"
            env |= {"PATH": f"{self._clock_tcpdump().parent}:{env['PATH']}", "NETDOCTOR_LAB_CLOCK": str(offset),
                    "NETDOCTOR_LAB_TCPDUMP": real}
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"])
        return env

    def _clock_tcpdump(self) -> Path:
        shim = self._clock_bin / "tcpdump"
        if not shim.exists():
            self._clock_bin.mkdir(parents=True, exist_ok=True)
            shim.write_text(f"#!/bin/sh\nexec {sys.executable} -I {clock.__file__} \"$@\"\n")
            shim.chmod(0o755)
        return shim

    @staticmethod
    def _path() -> str:
        return os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


def _find_container(pod: dict, name: str | None) -> dict:
    spec = pod["spec"]
    containers = list(spec.get("containers") or []) + list(spec.get("ephemeralContainers") or [])
    if name is None:
        return containers[0]
    for container in containers:
        if container["name"] == name:
            return container
    raise ValueError(f"container {name} is not valid for pod {pod['metadata']['name']}")


def _kill_group(process: subprocess.Popen) -> None:
    _signal_group(process, signal.SIGKILL)
    process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass  # the container is gone already
