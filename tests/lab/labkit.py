"""Test support for lab tests: a lab per module, and probes run straight in pod namespaces."""

from __future__ import annotations

import json

import re
import secrets
import subprocess
import time
from dataclasses import dataclass

from netdoctor.lab import lifecycle, net
from netdoctor.lab.sh import entered
from netdoctor.lab.state import LabConfig, LabPaths


def unique_name(prefix: str = "t") -> str:
    return prefix + secrets.token_hex(3)


@dataclass
class RunningLab:
    name: str
    kubeconfig: str

    def api(self):
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=self.kubeconfig)
        return client.CoreV1Api(api_client), api_client

    def pods(self, namespace: str, selector: str | None = None) -> list:
        v1, _ = self.api()
        return v1.list_namespaced_pod(namespace, label_selector=selector).items

    def netns(self, pod) -> str:
        return net.pod_netns(self.name, pod.metadata.uid)

    def wait(self, condition, timeout: float = 10.0, what: str = "condition", show=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}" + (f": {show()}" if show else ""))


def start(config: LabConfig) -> RunningLab:
    result = lifecycle.up(config)
    return RunningLab(config.name, str(result.kubeconfig))


def in_netns(netns: str, fn, *args):
    """fn(*args) with this thread inside `netns`; sockets it creates stay there."""
    with entered(netns):
        return fn(*args)


def run_in(netns: str, *argv: str, timeout: float = 5.0) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout)


def tcp(netns: str, ip: str, port: int, timeout: float = 1.0) -> str:
    """'ok', 'refused' or 'timeout' for a TCP connect from inside a namespace."""
    proc = run_in(netns, "timeout", str(timeout), "bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}")
    if proc.returncode == 0:
        return "ok"
    if "refused" in proc.stderr:
        return "refused"
    if proc.returncode == 124:
        return "timeout"
    return "unreachable: " + proc.stderr.strip()


def ping(netns: str, ip: str, size: int = 56, timeout: int = 1) -> bool:
    return run_in(netns, "ping", "-c1", f"-W{timeout}", "-M", "do", "-s", str(size), ip).returncode == 0


def path_mtu(netns: str, destination: str) -> int:
    """The MTU a packet to `destination` leaves with: its route's (Cilium's pods carry it there),
    else its device's."""
    route = json.loads(run_in(netns, "ip", "-j", "route", "get", destination).stdout)[0]
    metrics = {k: v for m in route.get("metrics") or [] for k, v in m.items()}
    return int(metrics.get("mtu") or run_in(netns, "cat", f"/sys/class/net/{route['dev']}/mtu").stdout)


def dig(netns: str, name: str, server: str = "10.96.0.10") -> list[str] | None:
    """A-record answers, or None when the query got no answer in time."""
    proc = run_in(netns, "dig", "+short", "+time=1", "+tries=1", f"@{server}", name, "A")
    if proc.returncode != 0 or re.search(r"timed out|unreachable", proc.stdout):
        return None
    return [line for line in proc.stdout.split() if re.match(r"^\d+\.\d+\.\d+\.\d+$", line)]


def lab_leftovers(name: str) -> list[str]:
    """Everything of a lab still on the machine: namespaces, /etc/netns dirs, processes, files."""
    prefix = net.lab_netns_prefix(name)
    found = [f"netns {n}" for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
             .stdout.split() if n.startswith(prefix)]
    found += [f"file {p}" for p in net.NETNS_ETC.glob(prefix + "*")] if net.NETNS_ETC.exists() else []
    root = LabPaths.of(name).root
    if root.exists():
        found.append(f"dir {root}")
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [f"process {line.strip()}" for line in ps.splitlines() if str(root) in line]
    return found


def check_json(lab: RunningLab, *extra: str, target: str = "svc/api", namespace: str = "shop") -> tuple[int, dict, str]:
    """`netdoctor check TARGET -n NS -o json` run in-process on the lab: exit code, report, stderr."""
    from io import StringIO

    from netdoctor.cli import main
    from netdoctor.environment import Environment

    out, err = StringIO(), StringIO()
    code = main(["check", target, "-n", namespace, "--kubeconfig", lab.kubeconfig, "-o", "json", *extra],
                Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"}))
    return code, (json.loads(out.getvalue()) if out.getvalue() else {}), err.getvalue()


def check_process(lab: RunningLab, *extra: str) -> subprocess.Popen:
    """`netdoctor check svc/api -n shop -o json` as its own process, with Ctrl-C's default action
    restored: a shell's background job (CI scripts, `… &`) inherits SIGINT ignored, and Python
    then never turns SIGINT into KeyboardInterrupt."""
    import os
    import signal
    import sys

    return subprocess.Popen([sys.executable, "-m", "netdoctor", "check", "svc/api", "-n", "shop", "--kubeconfig",
                             lab.kubeconfig, "-o", "json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


MANAGED = "app.kubernetes.io/managed-by=netdoctor"


def run_objects(lab: RunningLab) -> list[str]:
    """Every object a netdoctor run creates that is still in the lab: probe pods, their owner
    ConfigMaps and the expiring Jobs that own those."""
    from kubernetes import client

    v1, api_client = lab.api()
    pods = [f"pod/{p.metadata.name}" for p in v1.list_pod_for_all_namespaces(label_selector=MANAGED).items]
    maps = [f"configmap/{c.metadata.name}" for c in v1.list_config_map_for_all_namespaces(label_selector=MANAGED).items]
    jobs = [f"job/{j.metadata.name}" for j in
            client.BatchV1Api(api_client).list_job_for_all_namespaces(label_selector=MANAGED).items]
    return pods + maps + jobs
