"""Programs each node from the API objects: kube-proxy's Service rules, NetworkPolicy, and DNS.

Called by the lab controller on every reconcile. NetworkPolicy is enforced the way the lab was
built with (`lab up --policy drop|reject|off`). Each node's nftables table is rendered from the
objects and replaced atomically, only when its text changed. Faults can hold a node's kube-proxy
back (`stale_nodes`) or pin DNS records (`dns_overrides`): what a broken real node does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from netdoctor.lab import net, sh
from netdoctor.lab.dnsserver import build_zone
from netdoctor.lab.netpol import render_policy
from netdoctor.lab.proxy import NodeInfo, render_kube_proxy
from netdoctor.lab.state import PolicyMode

PROXY_TABLE = "kube-proxy"
POLICY_TABLE = "netpol"


class DataPlane:
    def __init__(self, nodes: list[net.NodeNet], zone_file: Path, policy: PolicyMode):
        self._nodes = nodes
        self._zone_file = zone_file
        self._policy = policy
        self._applied: dict[tuple[str, str], str] = {}
        self._zone_text = ""
        self.stale_nodes: set[str] = set()
        self.dns_overrides: dict[str, list[str]] = {}

    def reconcile(self, store, pod_node: dict[str, str]) -> None:
        services, slices = store.list("services"), store.list("endpointslices")
        pods = store.list("pods")
        for node in self._nodes:
            if node.name in self.stale_nodes:
                self._remove(node, PROXY_TABLE)
            else:
                info = NodeInfo(node.name, node.underlay_ip, node.pod_cidr, net.CLUSTER_CIDR)
                previous = self._applied.get((node.name, PROXY_TABLE))  # rewritten in place: affinity kept
                self._apply(node, PROXY_TABLE, render_kube_proxy(PROXY_TABLE, services, slices, info, previous))
            if self._policy is not PolicyMode.OFF:
                local = [p for p in pods if pod_node.get(p["metadata"]["uid"]) == node.name
                         and not p["spec"].get("hostNetwork")]
                script = render_policy(POLICY_TABLE, local, pods, store.list("namespaces"),
                                       store.list("networkpolicies"), self._policy)
                self._apply(node, POLICY_TABLE, script)
        self._write_zone(build_zone(services, slices, pods), self.dns_overrides)

    def forget(self, node: net.NodeNet) -> None:
        """The node's tables were lost (e.g. its namespace was rebuilt): program them again."""
        for key in [k for k in self._applied if k[0] == node.name]:
            del self._applied[key]

    def _apply(self, node: net.NodeNet, table: str, script: str) -> None:
        if self._applied.get((node.name, table)) != script:
            sh.nft(node.netns, script)
            self._applied[(node.name, table)] = script

    def _remove(self, node: net.NodeNet, table: str) -> None:
        if self._applied.pop((node.name, table), None) is not None:
            sh.nft(node.netns, f"delete table ip {table}\n")

    def _write_zone(self, zone: dict, overrides: dict[str, list[str]]) -> None:
        text = json.dumps({**zone, "overrides": overrides}, sort_keys=True)
        if text != self._zone_text:
            tmp = self._zone_file.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, self._zone_file)
            self._zone_text = text
