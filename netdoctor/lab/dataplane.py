"""Programs each node from the API objects: Service translation, NetworkPolicy, and DNS.

Called by the lab controller on every reconcile. Services are translated the way the lab was built
with (`lab up --proxy`): kube-proxy's nftables table or its iptables chains per node, or, with
`none` (Cilium's kube-proxy replacement), a socket-level translation table in every pod's own
namespace and in the node's (for its hostNetwork processes), with the node's netfilter kept from
tracking pod traffic. NetworkPolicy is enforced the way the lab's CNI does (`--cni`, `--policy
drop|reject|off`): in the node's forward path (flannel's nodes, kube-router's way in reject mode),
per workload interface (Calico), or on the lxc devices' netdev hooks (Cilium). Each table is
rendered from the objects and replaced atomically, only when its text changed. Faults can hold a
node's Service translation back (`stale_nodes`), pin DNS records (`dns_overrides`) or keep a new
pod's IP out of every node's policy rules for a while (`policy_lag`, seconds from when its IP was
first seen: Calico's Felix or Cilium's agents learning a new pod late): what a broken or busy real
node does.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from netdoctor.lab import cni, net, sh
from netdoctor.lab.dnsserver import build_zone
from netdoctor.lab.iptables import empty_tables, render_cilium_notrack, render_kube_proxy_iptables
from netdoctor.lab.netpol import CALICO_TABLE, CILIUM_TABLE, render_calico_policy, render_cilium_policy, render_policy
from netdoctor.lab.proxy import NodeInfo, render_kube_proxy, render_socket_lb
from netdoctor.lab.state import Cni, PolicyMode, ProxyMode

PROXY_TABLE = "kube-proxy"
POLICY_TABLE = "netpol"
SOCKET_LB_TABLE = "socket-lb"
IPTABLES = "iptables"  # the key of what iptables-nft-restore loaded last (kube-proxy, or Cilium's raw rules)
NOTRACK = "notrack"

SandboxOf = Callable[[str], "net.Sandbox | None"]  # the kubelets' sandbox_of


class DataPlane:
    def __init__(self, nodes: list[net.NodeNet], zone_file: Path, policy: PolicyMode, proxy: ProxyMode,
                 sandbox_of: SandboxOf):
        """`sandbox_of(pod uid)` is the kubelets': the live sandbox of a pod (per-pod tables and
        per-interface policy need one)."""
        self._nodes = nodes
        self._zone_file = zone_file
        self._policy = policy
        self._proxy = proxy
        self._sandbox_of = sandbox_of
        self._applied: dict[tuple[str, str], str] = {}
        self._zone_text = ""
        self.zone_written_at = 0.0  # the DNS servers reload the zone file within their poll (dnsserver.POLL_SECONDS)
        self.stale_nodes: set[str] = set()
        self.dns_overrides: dict[str, list[str]] = {}
        self.policy_lag = 0.0
        self._ip_since: dict[str, float] = {}  # pod uid -> when its IP was first seen
        self._programmed_from: tuple | None = None  # what the last pass rendered from (see `_inputs`)

    def reconcile(self, store, pod_node: dict[str, str]) -> None:
        """Render every table and apply those whose text changed; a pass whose inputs are those of
        the last one renders nothing (the controller passes every 0.1 s, mostly over a store that
        did not change: rendering them all made an idle lab's daemon busy 9 % of a CPU)."""
        inputs = self._inputs(store, pod_node)
        if inputs is not None and inputs == self._programmed_from:
            return
        self._program(store, pod_node)
        self._programmed_from = inputs

    def _inputs(self, store, pod_node: dict[str, str]) -> tuple | None:
        """What the tables are rendered from: the objects (the store's version), the faults' holds
        and the pods' live sandboxes; None while a policy lag makes them change with time alone."""
        if self.policy_lag:
            return None
        sandboxes = frozenset((uid, sandbox.netns) for uid in pod_node if (sandbox := self._sandbox_of(uid)))
        return (store.resource_version(), frozenset(self.stale_nodes),
                tuple(sorted((name, tuple(ips)) for name, ips in self.dns_overrides.items())), sandboxes)

    def _program(self, store, pod_node: dict[str, str]) -> None:
        services, slices = store.list("services"), store.list("endpointslices")
        pods = store.list("pods")
        peers = self._known_peers(pods)
        for node in self._nodes:
            local = [p for p in pods if pod_node.get(p["metadata"]["uid"]) == node.name
                     and not p["spec"].get("hostNetwork")]
            self._program_services(node, services, slices, local)
            if self._policy is not PolicyMode.OFF:
                self._program_policy(node, local, peers, store.list("namespaces"), store.list("networkpolicies"))
        self._forget_gone_pods(pods)
        self._write_zone(build_zone(services, slices, pods), self.dns_overrides)

    def _known_peers(self, pods: list[dict]) -> list[dict]:
        """The pods the nodes' policy rules know as peers: with `policy_lag`, not those whose IP
        appeared less than that long ago (their packets meet rules that do not admit them yet).
        Readiness plays no part: enforcers admit a pod by its IP and labels."""
        now = time.monotonic()
        addressed = {p["metadata"]["uid"] for p in pods if (p.get("status") or {}).get("podIP")}
        self._ip_since = {uid: self._ip_since.get(uid, now) for uid in addressed}
        if not self.policy_lag:
            return pods
        return [p for p in pods if now - self._ip_since.get(p["metadata"]["uid"], now) >= self.policy_lag]

    def forget(self, node: net.NodeNet) -> None:
        """The node's tables were lost (e.g. its namespace was rebuilt): program them again."""
        for key in [k for k in self._applied if k[0] == node.name]:
            del self._applied[key]

    # ---- Services ----------------------------------------------------------------------------
    def _program_services(self, node: net.NodeNet, services: list[dict], slices: list[dict], local: list[dict]) -> None:
        info = NodeInfo(node.name, node.underlay_ip, node.pod_cidr, net.CLUSTER_CIDR)
        stale = node.name in self.stale_nodes
        if self._proxy is ProxyMode.NFTABLES:
            if stale:
                self._remove(node.name, node.netns, PROXY_TABLE)
            else:
                previous = self._applied.get((node.name, PROXY_TABLE))  # rewritten in place: affinity kept
                self._apply(node.name, node.netns, PROXY_TABLE,
                            render_kube_proxy(PROXY_TABLE, services, slices, info, previous))
        elif self._proxy is ProxyMode.IPTABLES:
            rules = empty_tables() if stale else render_kube_proxy_iptables(services, slices, info)
            self._restore(node, IPTABLES, rules)
        else:
            self._restore(node, NOTRACK, render_cilium_notrack(net.CLUSTER_CIDR))
            self._program_socket_lb(node, info, services, slices, local, stale)

    def _program_socket_lb(self, node: net.NodeNet, info: NodeInfo, services: list[dict], slices: list[dict],
                           local: list[dict], stale: bool) -> None:
        """The node's namespace and each of its pods' get the same socket-level translation."""
        places = [(node.name, node.netns)] + [(sb.netns, sb.netns) for _, sb in self._endpoints(local)]
        for key, netns in places:
            if stale:
                self._remove(key, netns, SOCKET_LB_TABLE)
            else:
                previous = self._applied.get((key, SOCKET_LB_TABLE))
                self._apply(key, netns, SOCKET_LB_TABLE,
                            render_socket_lb(SOCKET_LB_TABLE, services, slices, info, previous))

    # ---- NetworkPolicy -----------------------------------------------------------------------
    def _program_policy(self, node: net.NodeNet, local: list[dict], pods: list[dict], namespaces: list[dict],
                        policies: list[dict]) -> None:
        if node.cni is Cni.FLANNEL:
            table, script = POLICY_TABLE, render_policy(POLICY_TABLE, local, pods, namespaces, policies, self._policy)
        else:
            endpoints = [(pod, sandbox.host_veth) for pod, sandbox in self._endpoints(local)]
            if node.cni is Cni.CALICO:
                table, script = CALICO_TABLE, render_calico_policy(endpoints, pods, namespaces, policies, self._policy)
            else:
                hosts = (cni.Cilium.router_ip(node), node.underlay_ip)
                table, script = CILIUM_TABLE, render_cilium_policy(endpoints, pods, namespaces, policies, hosts,
                                                                   self._policy)
        self._apply(node.name, node.netns, table, script)

    # ---- applying ----------------------------------------------------------------------------
    def _endpoints(self, local: list[dict]) -> list[tuple[dict, net.Sandbox]]:
        """The node's pods that have a sandbox of their own, with it."""
        found = [(pod, self._sandbox_of(pod["metadata"]["uid"])) for pod in local]
        return [(pod, sb) for pod, sb in found if sb and sb.host_veth]

    def _forget_gone_pods(self, pods: list[dict]) -> None:
        """A pod's own tables went with its namespace."""
        lab = self._nodes[0].lab
        keep = {n.name for n in self._nodes} | {net.pod_netns(lab, p["metadata"]["uid"]) for p in pods}
        for key in [k for k in self._applied if k[0] not in keep]:
            del self._applied[key]

    def _apply(self, key: str, netns: str, table: str, script: str) -> None:
        """Through libnftables in this process (sh.nft_in): an `nft` process a table took ~20 ms,
        four of them in the pass that follows a new pod, which does not run before that pass ends."""
        if self._applied.get((key, table)) != script:
            sh.nft_in(netns, script)
            self._applied[(key, table)] = script

    def _restore(self, node: net.NodeNet, key: str, rules: str) -> None:
        if self._applied.get((node.name, key)) != rules:
            sh.run(["ip", "netns", "exec", node.netns, "iptables-nft-restore"], stdin=rules)
            self._applied[(node.name, key)] = rules

    def _remove(self, key: str, netns: str, table: str) -> None:
        if self._applied.pop((key, table), None) is not None:
            sh.nft_in(netns, f"delete table ip {table}\n")

    def _write_zone(self, zone: dict, overrides: dict[str, list[str]]) -> None:
        text = json.dumps({**zone, "overrides": overrides}, sort_keys=True)
        if text != self._zone_text:
            tmp = self._zone_file.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, self._zone_file)
            self._zone_text = text
            self.zone_written_at = time.time()
