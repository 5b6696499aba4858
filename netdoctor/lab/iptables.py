"""kube-proxy's iptables mode for the lab (`lab up --proxy iptables`), and Cilium's NOTRACK rules.

The data plane calls `render_kube_proxy_iptables` whenever Services, EndpointSlices or nodes change
and loads the text with iptables-nft-restore in the node: the nat and filter tables are replaced
whole, atomically (kube-proxy restores with --noflush; nothing else in a lab node uses iptables).
Pure functions, no I/O. What is programmed (endpoints, traffic policies, affinity) is the same as
the nftables mode's (netdoctor.lab.proxy.node_views); the layout and names are kube-proxy's
(pkg/proxy/iptables/proxier.go):
- nat: PREROUTING and OUTPUT jump to KUBE-SERVICES, which sends each ClusterIP:port to
  `KUBE-SVC-<16 base32 of sha256(svcPortName + protocol)>` (`KUBE-SVL-…` for internalTrafficPolicy
  Local), and local destinations to KUBE-NODEPORTS (`KUBE-EXT-…`) last. KUBE-SVC masquerades
  traffic from outside the cluster CIDR, then picks `KUBE-SEP-…` (the hash with the endpoint) with
  `-m statistic --mode random --probability 1/(n-i)`; ClientIP affinity is `-m recent` per
  endpoint. KUBE-SEP marks hairpin traffic for masquerade and DNATs. KUBE-MARK-MASQ sets 0x4000,
  KUBE-POSTROUTING masquerades what carries it.
- filter: a Service without endpoints is REJECTed in KUBE-SERVICES (FORWARD and OUTPUT, new
  connections: ICMP port unreachable, "connection refused"), or in KUBE-EXTERNAL-SERVICES for its
  NodePort; a Local policy without a local endpoint is DROPped there. KUBE-FORWARD drops conntrack
  INVALID packets and accepts marked and established ones.
"""

from __future__ import annotations

import base64
import hashlib

from netdoctor.lab.proxy import MASQ_MARK, Endpoint, NodeInfo, NodeView, ServicePort, node_views

SERVICES, EXTERNAL_SERVICES, NODEPORTS = "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS"
POSTROUTING, MARK_MASQ, FORWARD, FIREWALL = "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL"
NEW = "-m conntrack --ctstate NEW"
MARK = f"{MASQ_MARK:#x}"


def render_kube_proxy_iptables(services: list[dict], slices: list[dict], node: NodeInfo) -> str:
    """iptables-restore input (filter and nat) for one node."""
    filter_chains, filter_rules = [SERVICES, EXTERNAL_SERVICES, FORWARD, NODEPORTS, FIREWALL], []
    nat_chains, nat_rules = [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ], []
    for view in node_views(services, slices, node):
        filter_rules += _filter_rules(view)
        chains, rules = _nat_service(view, node)
        nat_chains += chains
        nat_rules += rules
    nat_rules.append(f'-A {SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
                     f'last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j {NODEPORTS}')
    return "".join([
        _table("filter", ["INPUT", "FORWARD", "OUTPUT"], filter_chains, [*_filter_jumps(), *_forward_rules(),
                                                                          *filter_rules]),
        _table("nat", ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"], nat_chains, [*_nat_jumps(), *nat_rules]),
    ])


def empty_tables() -> str:
    """What a node restores when its kube-proxy is gone: the nat and filter tables, empty."""
    return _table("filter", ["INPUT", "FORWARD", "OUTPUT"], [], []) + \
        _table("nat", ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"], [], [])


def render_cilium_notrack(cluster_cidr: str) -> str:
    """Cilium's `install-no-conntrack-iptables-rules` (raw CILIUM_PRE_raw / CILIUM_OUTPUT_raw,
    "cilium: NOTRACK for pod traffic"), so the node's netfilter keeps no conntrack entry for pod
    traffic, as with BPF host routing. Cilium matches `-s` or `-d` the pod CIDR; the lab matches
    both, sparing a pod's traffic with its node's own address, whose Service translation (the
    stand-in for the host's socket LB, a DNAT) needs conntrack."""
    rule = f'-s {cluster_cidr} -d {cluster_cidr} -m comment --comment "cilium: NOTRACK for pod traffic" -j CT --notrack'
    return _table("raw", ["PREROUTING", "OUTPUT"], ["CILIUM_PRE_raw", "CILIUM_OUTPUT_raw"], [
        '-A PREROUTING -m comment --comment "cilium-feeder: CILIUM_PRE_raw" -j CILIUM_PRE_raw',
        '-A OUTPUT -m comment --comment "cilium-feeder: CILIUM_OUTPUT_raw" -j CILIUM_OUTPUT_raw',
        f"-A CILIUM_PRE_raw {rule}",
        f"-A CILIUM_OUTPUT_raw {rule}",
    ])


def port_name(sp: ServicePort) -> str:
    """kube-proxy's ServicePortName string: `namespace/name` and `:port-name` when the port has one."""
    return f"{sp.namespace}/{sp.service}" + (f":{sp.port_name}" if sp.port_name else "")


def chain_hash(sp: ServicePort, endpoint: Endpoint | None = None) -> str:
    """portProtoHash (with the endpoint: servicePortEndpointChainName's): 16 base32 of sha256."""
    text = port_name(sp) + sp.protocol.lower() + (str(endpoint) if endpoint else "")
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


# ---- the fixed part ------------------------------------------------------------------------------

def _filter_jumps() -> list[str]:
    ext, svc = "kubernetes externally-visible service portals", "kubernetes service portals"
    lb = "kubernetes load balancer firewall"
    return [
        f'-A INPUT {NEW} -m comment --comment "{ext}" -j {EXTERNAL_SERVICES}',
        f'-A INPUT -m comment --comment "kubernetes health check service ports" -j {NODEPORTS}',
        f'-A INPUT {NEW} -m comment --comment "{lb}" -j {FIREWALL}',
        f'-A FORWARD {NEW} -m comment --comment "{lb}" -j {FIREWALL}',
        f'-A FORWARD -m comment --comment "kubernetes forwarding rules" -j {FORWARD}',
        f'-A FORWARD {NEW} -m comment --comment "{svc}" -j {SERVICES}',
        f'-A FORWARD {NEW} -m comment --comment "{ext}" -j {EXTERNAL_SERVICES}',
        f'-A OUTPUT {NEW} -m comment --comment "{lb}" -j {FIREWALL}',
        f'-A OUTPUT {NEW} -m comment --comment "{svc}" -j {SERVICES}',
    ]


def _forward_rules() -> list[str]:
    return [
        f"-A {FORWARD} -m conntrack --ctstate INVALID -j DROP",
        f'-A {FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark {MARK}/{MARK} -j ACCEPT',
        f'-A {FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate '
        "RELATED,ESTABLISHED -j ACCEPT",
    ]


def _nat_jumps() -> list[str]:
    return [
        f'-A PREROUTING -m comment --comment "kubernetes service portals" -j {SERVICES}',
        f'-A OUTPUT -m comment --comment "kubernetes service portals" -j {SERVICES}',
        f'-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j {POSTROUTING}',
        f"-A {POSTROUTING} -m mark ! --mark {MARK}/{MARK} -j RETURN",
        f"-A {POSTROUTING} -j MARK --xor-mark {MARK}",
        f'-A {POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE '
        "--random-fully",
        f"-A {MARK_MASQ} -j MARK --or-mark {MARK}",
    ]


# ---- per Service port ----------------------------------------------------------------------------

def _match(sp: ServicePort, destination: str | None = None, port: int | None = None) -> str:
    proto = sp.protocol.lower()
    dest = f" -d {destination}" if destination else ""
    return f"-m {proto} -p {proto}{dest} --dport {port or sp.port}"


def _filter_rules(view: NodeView) -> list[str]:
    """REJECT without any endpoint; DROP for a Local policy without a local one."""
    sp, name, rules = view.sp, port_name(view.sp), []
    if not view.has_internal:
        target, why = ("DROP", "has no local endpoints") if view.has_endpoints else ("REJECT", "has no endpoints")
        rules.append(f'-A {SERVICES} -m comment --comment "{name} {why}" {_match(sp, sp.cluster_ip)} -j {target}')
    if sp.node_port is not None and not view.has_external:
        target, why = ("DROP", "has no local endpoints") if view.has_endpoints else ("REJECT", "has no endpoints")
        rules.append(f'-A {EXTERNAL_SERVICES} -m comment --comment "{name} {why}" -m addrtype --dst-type LOCAL '
                     f"{_match(sp, port=sp.node_port)} -j {target}")
    return rules


def _nat_service(view: NodeView, node: NodeInfo) -> tuple[list[str], list[str]]:
    """(chains, rules) of one Service port in the nat table."""
    sp, name, digest = view.sp, port_name(view.sp), chain_hash(view.sp)
    svc, svl, ext = f"KUBE-SVC-{digest}", f"KUBE-SVL-{digest}", f"KUBE-EXT-{digest}"
    internal = svl if sp.internal_local else svc
    cluster_ip = f'-m comment --comment "{name} cluster IP" {_match(sp, sp.cluster_ip)}'
    chains, rules = [], []
    if view.has_internal:
        rules += [f"-A {SERVICES} {cluster_ip} -j {internal}",
                  f"-A {internal} {cluster_ip} ! -s {node.cluster_cidr} -j {MARK_MASQ}"]
    if sp.node_port is not None and view.has_endpoints:
        chains.append(ext)
        rules.append(f'-A {NODEPORTS} -m comment --comment "{name}" {_match(sp, port=sp.node_port)} -j {ext}')
        rules += _external_rules(view, node, ext, svc, svl)
    for chain, endpoints in ((svc, view.cluster), (svl, view.local)):
        if endpoints:
            chains.append(chain)
            rules += _balance(sp, chain, endpoints)
    for ep in view.reachable:
        sep = f"KUBE-SEP-{chain_hash(sp, ep)}"
        chains.append(sep)
        affinity = f" -m recent --name {sep} --set" if sp.affinity_seconds else ""
        rules += [f'-A {sep} -m comment --comment "{name}" -s {ep.ip} -j {MARK_MASQ}',
                  f'-A {sep} -m comment --comment "{name}"{affinity} -m {sp.protocol.lower()} '
                  f"-p {sp.protocol.lower()} -j DNAT --to-destination {ep}"]
    return chains, rules


def _external_rules(view: NodeView, node: NodeInfo, ext: str, svc: str, svl: str) -> list[str]:
    sp, name = view.sp, port_name(view.sp)
    if not sp.external_local:
        return [f'-A {ext} -m comment --comment "masquerade traffic for {name} external destinations" -j {MARK_MASQ}',
                f"-A {ext} -j {svc}"]
    rules = [] if not view.cluster else [  # short circuits to the cluster endpoints, as in the nftables mode
        f'-A {ext} -m comment --comment "pod traffic for {name} external destinations" -s {node.cluster_cidr} -j {svc}',
        f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {name} external destinations" '
        f"-m addrtype --src-type LOCAL -j {MARK_MASQ}",
        f'-A {ext} -m comment --comment "route LOCAL traffic for {name} external destinations" '
        f"-m addrtype --src-type LOCAL -j {svc}",
    ]
    return rules + ([f"-A {ext} -j {svl}"] if view.has_external else [])


def _balance(sp: ServicePort, chain: str, endpoints: tuple[Endpoint, ...]) -> list[str]:
    """Affinity first (a known client goes back to its endpoint), then 1/(n-i) random picks."""
    name, rules = port_name(sp), []
    seps = [(ep, f"KUBE-SEP-{chain_hash(sp, ep)}") for ep in endpoints]
    if sp.affinity_seconds:
        rules += [f'-A {chain} -m comment --comment "{name} -> {ep}" -m recent --name {sep} --rcheck '
                  f"--seconds {sp.affinity_seconds} --reap -j {sep}" for ep, sep in seps]
    for i, (ep, sep) in enumerate(seps):
        pick = f" -m statistic --mode random --probability {1.0 / (len(seps) - i):0.10f}" if i < len(seps) - 1 else ""
        rules.append(f'-A {chain} -m comment --comment "{name} -> {ep}"{pick} -j {sep}')
    return rules


def _table(name: str, builtin: list[str], chains: list[str], rules: list[str]) -> str:
    lines = [f"*{name}", *(f":{c} ACCEPT [0:0]" for c in builtin), *(f":{c} - [0:0]" for c in chains), *rules, "COMMIT"]
    return "\n".join(lines) + "\n"
