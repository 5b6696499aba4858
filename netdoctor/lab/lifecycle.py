"""What the `netdoctor lab` commands do: start and stop lab daemons, apply, break and fix.

Called by netdoctor/lab/cli.py (which only prints) and by tests. `down` works from what is on
the machine (pid file, namespaces with the lab's prefix, the state directory), so it also cleans
up after a daemon that was killed or a build that failed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from netdoctor import manifests
from netdoctor.errors import NetdoctorError, UsageError
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import net, sh
from netdoctor.lab.faults import CATALOG, Fault
from netdoctor.lab.state import LabConfig, LabPaths, ProxyMode, existing_labs, generation, write_json_atomically

UP_TIMEOUT = 30.0
STOP_TIMEOUT = 3.0
FAULT_TIMEOUT = 20.0  # the daemon reports within its SETTLE_TIMEOUT (10 s)


class LabError(NetdoctorError):
    """The lab could not be built or changed; its message says what the daemon reported."""

    exit_code = ExitCode.ENVIRONMENT


@dataclass(frozen=True)
class UpResult:
    name: str
    config: LabConfig
    kubeconfig: Path
    nodes: int
    pods: int
    seconds: float


@dataclass(frozen=True)
class LabStatus:
    name: str
    state: str  # "running", or "stopped" when its daemon is gone
    config: LabConfig
    faults: tuple[str, ...]
    kubeconfig: Path


@dataclass(frozen=True)
class AppliedFault:
    name: str
    target: str
    summary: str
    settled: bool = True  # its effects (rollouts, endpoints, Service rules) were in place when `lab break` returned


def up(config: LabConfig) -> UpResult:
    sh.require_environment()
    if config.proxy_mode is not ProxyMode.NFTABLES:
        sh.require_iptables()
    sh.require_libnftables()
    paths = LabPaths.of(config.name)
    if paths.root.exists():
        if _alive(paths.daemon_pid()):
            raise UsageError(f"lab {config.name} is already up (netdoctor lab down --name {config.name})")
        down(config.name)
    started = time.monotonic()
    paths.write_config(config)
    try:
        _start_daemon(paths)
    except BaseException:
        down(config.name)
        raise
    pods = len(list((paths.root / "pods").iterdir())) if (paths.root / "pods").exists() else 0
    return UpResult(config.name, config, paths.kubeconfig, config.nodes, pods, time.monotonic() - started)


def _start_daemon(paths: LabPaths) -> None:
    read_end, write_end = os.pipe()
    with open(paths.log, "ab") as log:
        subprocess.Popen([sys.executable, "-m", "netdoctor.lab.daemon", str(paths.root), str(write_end)],
                         pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    os.close(write_end)
    try:
        line = _read_line(read_end, UP_TIMEOUT)
    finally:
        os.close(read_end)
    if not line.startswith("ready "):
        reason = line.partition(" ")[2] if line.startswith("error ") else "the lab daemon stopped"
        raise LabError(f"lab {paths.name} could not be built: {reason.strip()} (log: {paths.log})")


def _read_line(fd: int, timeout: float) -> str:
    data, deadline = b"", time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return "error timed out waiting for the lab daemon"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def down(name: str) -> str:
    sh.require_environment()
    paths = LabPaths.of(name)
    _stop_daemon(paths)
    net.teardown(name)
    shutil.rmtree(paths.root, ignore_errors=True)
    return name


def down_all() -> list[str]:
    names = set(existing_labs())
    names |= {n.split("-")[1] for n in sh.netns_names() if n.startswith("nd-") and n.count("-") >= 2}
    return [down(name) for name in sorted(names)]


def _stop_daemon(paths: LabPaths) -> None:
    pid = paths.daemon_pid()
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def pick(name: str | None) -> str:
    """The lab a command means: the one named, else the only one, else 'demo'."""
    if name:
        if not LabPaths.of(name).root.exists():
            raise UsageError(f"no lab named {name} (netdoctor lab status)")
        return name
    labs = existing_labs()
    if len(labs) > 1:
        raise UsageError(f"several labs are up ({', '.join(labs)}): say which with --name")
    if not labs:
        raise UsageError("no lab is up (netdoctor lab up)")
    return labs[0]


def statuses(name: str | None) -> list[LabStatus]:
    names = [pick(name)] if name else existing_labs()
    result = []
    for lab in names:
        paths = LabPaths.of(lab)
        state = "running" if _alive(paths.daemon_pid()) else "stopped"
        result.append(LabStatus(lab, state, paths.read_config(), tuple(_desired(paths)), paths.kubeconfig))
    return result


def kubeconfig_path(name: str) -> Path:
    return LabPaths.of(name).kubeconfig


def apply(name: str, files: list[str]) -> list[str]:
    from netdoctor.lab.client import LabClient

    objects = manifests.load_paths(files)
    return LabClient(kubeconfig_path(name)).apply(objects)


def catalog() -> list[Fault]:
    return list(CATALOG.values())


def break_fault(name: str, fault: str, target: str | None) -> AppliedFault:
    if fault not in CATALOG:
        raise UsageError(f"unknown fault {fault!r} (netdoctor lab faults lists them)")
    spec = CATALOG[fault]
    paths = LabPaths.of(name)
    desired = _desired(paths)
    if fault in desired:
        raise UsageError(f"{fault} is already broken in lab {name} (netdoctor lab fix {fault})")
    settled = _set_faults(paths, {**desired, fault: target or spec.default_target})
    return AppliedFault(fault, target or spec.default_target, spec.summary, settled)


def fix_faults(name: str, fault: str | None) -> list[str]:
    paths = LabPaths.of(name)
    desired = _desired(paths)
    if fault is not None and fault not in desired:
        raise UsageError(f"{fault} is not broken in lab {name}")
    remaining = {k: v for k, v in desired.items() if fault is not None and k != fault}
    _set_faults(paths, remaining)
    return sorted(set(desired) - set(remaining))


def _desired(paths: LabPaths) -> dict[str, str]:
    try:
        return json.loads(paths.faults.read_text())
    except FileNotFoundError:
        return {}


def _set_faults(paths: LabPaths, faults: dict[str, str]) -> bool:
    """Write the desired faults and wait for the daemon to apply them and for their effects to
    settle (False: still settling after the daemon's SETTLE_TIMEOUT); its errors are ours."""
    if not _alive(paths.daemon_pid()):
        raise LabError(f"lab {paths.name} is not running (netdoctor lab up --name {paths.name})")
    previous = _desired(paths)
    write_json_atomically(paths.faults, faults)
    written = generation(paths.faults)
    deadline = time.monotonic() + FAULT_TIMEOUT
    while time.monotonic() < deadline:
        try:
            applied = json.loads(paths.applied_faults.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            applied = {}
        if applied.get("generation") == written:
            if applied["errors"]:
                write_json_atomically(paths.faults, {k: v for k, v in applied["active"].items()})
                errors = applied["errors"]
                message = "; ".join(f"{name}: {e['message']}" for name, e in errors.items())
                raise (UsageError if all(e["usage"] for e in errors.values()) else LabError)(message)
            return applied.get("settled", True)
        time.sleep(0.02)
    write_json_atomically(paths.faults, previous)
    raise LabError(f"lab {paths.name} did not apply the change within {FAULT_TIMEOUT:.0f}s (log: {paths.log})")
