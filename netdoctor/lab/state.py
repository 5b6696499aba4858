"""Where a lab lives on disk and how it was asked to be built.

Used by the lab CLI (up, down, status, break, fix) and by the lab daemon. Every lab has a
directory under NETDOCTOR_LAB_DIR (default /run/netdoctor/labs) named after it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path

from netdoctor.errors import UsageError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,7}$")
DEFAULT_ROOT = "/run/netdoctor/labs"


class PolicyMode(Enum):
    """How the lab's nodes enforce NetworkPolicy (`lab up --policy`): drop denied packets silently
    (Calico, Cilium, Antrea by default), reject them with ICMP port unreachable sent by the node
    (kube-router), or not at all (flannel)."""

    DROP = "drop"
    REJECT = "reject"
    OFF = "off"


POLICY_ALIASES = {"enforce": PolicyMode.DROP}  # the name `drop` had before `reject` existed


class Cni(Enum):
    """The CNI dialect the lab speaks (`lab up --cni`): how nodes and pods are wired (netdoctor.lab.cni)."""

    FLANNEL = "flannel"
    CALICO = "calico"
    CILIUM = "cilium"


class ProxyMode(Enum):
    """What translates Service IPs (`lab up --proxy`): kube-proxy in nftables or iptables mode, or
    nothing on the nodes (NONE: Cilium's kube-proxy replacement translates at the socket)."""

    NFTABLES = "nftables"
    IPTABLES = "iptables"
    NONE = "none"


MAX_GHOST_NODES, MAX_GHOST_PODS, MAX_GHOST_POLICIES = 10_000, 100_000, 10_000
DEFAULT_PROXY = {Cni.FLANNEL: ProxyMode.NFTABLES, Cni.CALICO: ProxyMode.NFTABLES, Cni.CILIUM: ProxyMode.NONE}


@dataclass(frozen=True)
class LabConfig:
    name: str
    nodes: int = 2
    overlay: str = "vxlan"
    policy: str = PolicyMode.DROP.value
    scenario: str = "shop"
    cni: str = Cni.FLANNEL.value
    proxy: str = ""  # empty: the CNI's default (DEFAULT_PROXY)
    ghost_nodes: int = 0  # API objects without a data plane (netdoctor.lab.ghosts)
    ghost_pods: int = 0
    ghost_policies: int = 0

    def validate(self) -> "LabConfig":
        if not NAME_PATTERN.match(self.name):
            raise UsageError(f"lab name {self.name!r}: use 1-8 lowercase letters and digits, starting with a letter")
        if not 1 <= self.nodes <= 8:
            raise UsageError("--nodes must be between 1 and 8")
        if self.overlay not in ("vxlan", "routed"):
            raise UsageError("--overlay must be vxlan or routed")
        if self.policy not in POLICY_ALIASES and self.policy not in {m.value for m in PolicyMode}:
            raise UsageError("--policy must be drop, reject or off")
        if self.cni not in {c.value for c in Cni}:
            raise UsageError("--cni must be flannel, calico or cilium")
        if self.proxy and self.proxy not in {m.value for m in ProxyMode}:
            raise UsageError("--proxy must be nftables, iptables or none")
        for option, value, most in (("--ghost-nodes", self.ghost_nodes, MAX_GHOST_NODES),
                                     ("--ghost-pods", self.ghost_pods, MAX_GHOST_PODS),
                                     ("--ghost-policies", self.ghost_policies, MAX_GHOST_POLICIES)):
            if not 0 <= value <= most:
                raise UsageError(f"{option} must be between 0 and {most:,}")
        if self.ghost_pods and not self.ghost_nodes:
            raise UsageError("--ghost-pods needs --ghost-nodes: ghost pods run on ghost nodes")
        checked = replace(self, policy=self.policy_mode.value, proxy=self.proxy_mode.value)
        if checked.proxy_mode is ProxyMode.NONE and checked.cni_dialect is not Cni.CILIUM:
            raise UsageError(f"--proxy none: {self.cni} does not translate Service IPs, so no ClusterIP (DNS "
                             "included) would answer; use --proxy nftables or iptables, or --cni cilium")
        return checked

    @property
    def policy_mode(self) -> PolicyMode:
        """The enforcement mode; a lab written before `reject` existed says `enforce`."""
        return POLICY_ALIASES.get(self.policy) or PolicyMode(self.policy)

    @property
    def cni_dialect(self) -> Cni:
        return Cni(self.cni)

    @property
    def proxy_mode(self) -> ProxyMode:
        """The Service proxy; a lab written before `--proxy` existed has kube-proxy's nftables mode."""
        return ProxyMode(self.proxy) if self.proxy else DEFAULT_PROXY[self.cni_dialect]


def labs_root(environ=os.environ) -> Path:
    return Path(environ.get("NETDOCTOR_LAB_DIR", DEFAULT_ROOT))


@dataclass(frozen=True)
class LabPaths:
    root: Path

    @classmethod
    def of(cls, name: str, environ=os.environ) -> "LabPaths":
        return cls(labs_root(environ) / name)

    @property
    def name(self) -> str:
        return self.root.name

    config = property(lambda self: self.root / "config.json")
    kubeconfig = property(lambda self: self.root / "kubeconfig")
    pid = property(lambda self: self.root / "daemon.pid")
    log = property(lambda self: self.root / "daemon.log")
    zone = property(lambda self: self.root / "zone.json")
    faults = property(lambda self: self.root / "faults.json")
    applied_faults = property(lambda self: self.root / "faults-applied.json")

    def write_config(self, config: LabConfig) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(asdict(config)))

    def read_config(self) -> LabConfig:
        return LabConfig(**json.loads(self.config.read_text()))

    def daemon_pid(self) -> int | None:
        try:
            return int(self.pid.read_text())
        except (OSError, ValueError):
            return None


def existing_labs(environ=os.environ) -> list[str]:
    root = labs_root(environ)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def write_json_atomically(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def generation(path: Path) -> str:
    """Which write of a file `write_json_atomically` made is there now: each makes a new inode.
    The time alone is not enough: two writes within one tick of the kernel's coarse file clock
    (1-10 ms) have the same mtime."""
    st = path.stat()
    return f"{st.st_mtime_ns}:{st.st_ino}"
