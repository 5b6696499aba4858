"""NetworkPolicy enforcement for the lab: the policies that apply to one node's pods, as nftables.

The lab's policy controller calls `render_policy` for each node whenever pods, namespaces or
policies change, and applies the script with `ip netns exec NODE nft -f -` (it replaces the whole
table atomically); a Calico or Cilium lab calls `render_calico_policy` or `render_cilium_policy`
instead, which enforce the same rules where those CNIs do (their docstrings). Like kube-router or
Calico, and independently of netdoctor's offline policy engine, so that the two can be checked
against each other. Pure functions, no I/O.

With flannel, enforcement lives in the ip forward hook of the node, which sees pod-to-pod traffic
(bridged traffic too, through br_netfilter) after Service DNAT and before masquerade:
- established/related packets are accepted; a pod reaching itself is always accepted;
- a packet from an egress-isolated local pod must match an egress rule of a policy selecting it;
- a packet to an ingress-isolated local pod must match an ingress rule of a policy selecting it;
- anything else isolated is dropped (with a counter) in drop mode, the default (Calico, Cilium,
  Antrea). In reject mode it is rejected the kube-router way: each isolated pod has its chain
  `KUBE-POD-FW-<hash>` (jumped to from `KUBE-ROUTER-FORWARD`) ending in `reject with icmp type
  port-unreachable` for every protocol, ICMP echo included. The node sends the error from its
  address towards the client (cni0's on the client's node, flannel.1's across the overlay), and
  conntrack gives it the ClusterIP as sender when the connection went through a Service; the
  kernel's ICMP rate limit (net.ipv4.icmp_ratelimit, left at its default) can eat it.
Traffic between a pod and its own node (kubelet probes, hostNetwork) never crosses the forward
hook and stays allowed, as Kubernetes requires. Named ports resolve on the destination pod's
containerPorts (egress: on pods whose IP the rule's peers cover). IPv4 only.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Iterable

from netdoctor.lab.state import PolicyMode
from netdoctor.labels import from_label_selector

NS_NAME_LABEL = "kubernetes.io/metadata.name"
_NFT_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
FORWARD_CHAIN = "KUBE-ROUTER-FORWARD"  # reject mode: kube-router's chain names
CALICO_TABLE = "calico"
CILIUM_TABLE = "cilium"
POD_CHAIN_PREFIX = "KUBE-POD-FW-"


@dataclass(frozen=True)
class _Pod:
    namespace: str
    name: str
    ip: str
    labels: dict
    container_ports: tuple[tuple[str, str, int], ...]  # (name, protocol, port)

    def named_port(self, name: str, protocol: str) -> int | None:
        return next((p for n, proto, p in self.container_ports if n == name and proto == protocol), None)


@dataclass(frozen=True)
class _Side:
    """What one policy rule allows: the local pods it protects, the peers, and one port clause."""

    local_field: str  # "daddr" for ingress (local pod is the destination), "saddr" for egress
    local_ips: tuple[str, ...]
    peer_field: str
    peers: tuple[str, ...] | None  # None: any peer


@dataclass(frozen=True)
class _Isolation:
    """One direction of one policy, and the local pods it isolates in that direction."""

    policy: dict
    direction: str  # "ingress" or "egress"
    selected: tuple[_Pod, ...]


_Context = tuple[list[_Pod], dict[str, dict]]  # every pod policies can name, and each namespace's labels


def render_policy(table: str, local_pods: list[dict], all_pods: list[dict], namespaces: list[dict],
                  policies: list[dict], mode: PolicyMode = PolicyMode.DROP) -> str:
    """The complete nftables script enforcing `policies` for `local_pods`; replaces `table`.
    `mode` is DROP or REJECT (the caller renders nothing when enforcement is off)."""
    pods = [p for p in map(_pod, all_pods) if p]
    local = [p for p in map(_pod, local_pods) if p]
    isolations = _isolations(policies, local)
    context = (pods, _namespace_labels(namespaces, pods))
    body = _reject_body(isolations, context) if mode is PolicyMode.REJECT else _drop_body(isolations, context)
    return f"table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{\n{body}}}\n"


def _isolations(policies: list[dict], local: list[_Pod]) -> list[_Isolation]:
    found = []
    for policy in sorted(policies, key=_policy_key):
        spec, ns = policy.get("spec") or {}, _policy_key(policy)[0]
        selector = from_label_selector(spec.get("podSelector") or {})
        selected = tuple(p for p in local if p.namespace == ns and selector.matches(p.labels))
        if selected:
            found += [_Isolation(policy, t.lower(), selected) for t in _policy_types(spec) if t in ("Ingress", "Egress")]
    return found


def _isolated(isolations: list[_Isolation], direction: str | None) -> list[_Pod]:
    """The local pods isolated in `direction` (None: in either), by IP."""
    by_ip = {p.ip: p for i in isolations if direction in (None, i.direction) for p in i.selected}
    return [by_ip[ip] for ip in _sorted_ips(set(by_ip))]


def _self_set(isolations: list[_Isolation]) -> str:
    ips = [p.ip for p in _isolated(isolations, None)]
    return _set("self", "ipv4_addr . ipv4_addr", [f"{ip} . {ip}" for ip in ips])


def _drop_body(isolations: list[_Isolation], context: _Context) -> str:
    """Two shared chains, one per direction, each ending in a counted drop."""
    rules = {d: [r for i in isolations if i.direction == d for r in _direction_rules(i.policy, d, i.selected, *context)]
             for d in ("ingress", "egress")}
    return "".join([
        _set("ingress-isolated", "ipv4_addr", [p.ip for p in _isolated(isolations, "ingress")]),
        _set("egress-isolated", "ipv4_addr", [p.ip for p in _isolated(isolations, "egress")]),
        _self_set(isolations),
        _chain("forward", [
            "type filter hook forward priority filter; policy accept;",
            "ct state established,related accept",
            "ip saddr . ip daddr @self accept",
            "ip saddr @egress-isolated jump egress",
            "ip daddr @ingress-isolated jump ingress",
        ]),
        _chain("egress", [*rules["egress"], 'counter drop comment "egress denied"']),
        _chain("ingress", [*rules["ingress"], 'counter drop comment "ingress denied"']),
    ])


def _reject_body(isolations: list[_Isolation], context: _Context) -> str:
    """kube-router's layout: verdict maps from an isolated pod's IP to its own chain, which holds
    the pod's allow rules (ingress: accept; egress: return, for the destination's check) and
    ends in a counted reject."""
    chains, jumps = [], {"ingress": [], "egress": []}
    for pod in _isolated(isolations, None):
        mine = [i for i in isolations if pod in i.selected]
        name = pod_firewall_chain(pod.namespace, pod.name)
        for direction in sorted({i.direction for i in mine}):
            jumps[direction].append(f"{pod.ip} : jump {name}")
        rules = [r for i in mine for r in _direction_rules(i.policy, i.direction, (pod,), *context)]
        chains.append(_chain(name, [*rules, "counter reject with icmp type port-unreachable "
                                            f'comment "rule to REJECT traffic of POD {pod.namespace}/{pod.name}"']))
    return "".join([
        _map("ingress-isolated", jumps["ingress"]),
        _map("egress-isolated", jumps["egress"]),
        _self_set(isolations),
        *chains,
        _chain(FORWARD_CHAIN, [
            "type filter hook forward priority filter; policy accept;",
            "ct state established,related accept",
            "ip saddr . ip daddr @self accept",
            "ip saddr vmap @egress-isolated",
            "ip daddr vmap @ingress-isolated",
        ]),
    ])


def render_calico_policy(endpoints: list[tuple[dict, str]], all_pods: list[dict], namespaces: list[dict],
                         policies: list[dict], mode: PolicyMode = PolicyMode.DROP) -> str:
    """Calico's enforcement for one node's workloads, `endpoints` being (pod, its cali interface):
    Felix's layout in its nftables mode (table `ip calico`, iptables' chain names with the table's
    prefix). filter-FORWARD -> filter-cali-FORWARD dispatches on the interface to
    `filter-cali-fw-<iface>` (from the workload: its egress policy) and `filter-cali-tw-<iface>` (to
    it: its ingress policy). A chain returns what a policy allows and ends in drop ("Drop if no
    policies passed packet"), or in reject with `--policy reject` (FilterDenyAction REJECT: ICMP
    port unreachable from the node); a workload no policy selects returns (its profile allows)."""
    pods = [p for p in map(_pod, all_pods) if p]
    local = sorted(((p, iface) for obj, iface in endpoints if (p := _pod(obj))), key=lambda e: e[1])
    isolations = _isolations(policies, [p for p, _ in local])
    context = (pods, _namespace_labels(namespaces, pods))
    deny = "reject" if mode is PolicyMode.REJECT else "drop"
    chains, dispatch = [], {"egress": [], "ingress": []}
    for pod, iface in local:
        for direction, kind in (("egress", "fw"), ("ingress", "tw")):
            name = f"filter-cali-{kind}-{iface}"
            dispatch[direction].append(f'"{iface}" : goto {name}')
            mine = [i for i in isolations if i.direction == direction and pod in i.selected]
            rules = [r for i in mine for r in _direction_rules(i.policy, direction, (pod,), *context, verdict="return")]
            end = f'counter {deny} comment "Drop if no policies passed packet"' if mine else "return"
            chains.append(_chain(name, ["ct state established,related accept", "ct state invalid drop", *rules, end]))
    body = "".join([
        _self_set(isolations),
        _map("from-wl-dispatch", dispatch["egress"], "ifname"),
        _map("to-wl-dispatch", dispatch["ingress"], "ifname"),
        _chain("filter-FORWARD", ["type filter hook forward priority filter; policy accept;",
                                  "jump filter-cali-FORWARD"]),
        _chain("filter-cali-FORWARD", [
            "ip saddr . ip daddr @self accept",
            'iifname "cali*" jump filter-cali-from-wl-dispatch',
            'oifname "cali*" jump filter-cali-to-wl-dispatch',
        ]),
        _chain("filter-cali-from-wl-dispatch", ["iifname vmap @from-wl-dispatch"]),
        _chain("filter-cali-to-wl-dispatch", ["oifname vmap @to-wl-dispatch"]),
        *chains,
    ])
    return f"table ip {CALICO_TABLE} {{}}\ndelete table ip {CALICO_TABLE}\ntable ip {CALICO_TABLE} {{\n{body}}}\n"


_FLOW = "ip saddr . ip daddr . meta l4proto . th sport . th dport"
_REPLY = "ip daddr . ip saddr . meta l4proto . th dport . th sport"
_PORTS = "meta l4proto { tcp, udp, sctp }"


def render_cilium_policy(endpoints: list[tuple[dict, str]], all_pods: list[dict], namespaces: list[dict],
                         policies: list[dict], host_ips: tuple[str, ...], mode: PolicyMode = PolicyMode.DROP) -> str:
    """Cilium's enforcement for one node's endpoints, `endpoints` being (pod, its lxc interface),
    where Cilium's BPF programs make it, in nftables' netdev family (the stand-in for tc/eBPF):
    egress policy on the source's lxc ingress hook (`from-container`: tcpdump on the lxc still
    sees the dropped packet), ingress policy on the destination's lxc egress hook (`to-container`:
    before delivery, so a dropped packet never shows on that lxc). Denied packets vanish (Cilium's
    drop reason 133, Policy denied); with `--policy reject` an egress deny is answered with ICMP
    "packet filtered" (admin prohibited), as Cilium >= 1.19's policy-deny-response=icmp does for
    IPv4 egress denies only; ingress denies still drop. The node keeps no netfilter conntrack for
    pod traffic, so the state is the table's own, as Cilium's is its BPF CT map: the flows a
    policy let through (`ct-egress`, `ct-ingress`; echo requests by id) pass both ways. The sets
    start empty when the table is rewritten (pods or policies changed). The node's own addresses
    (`host_ips`) reach its pods and are reached by them (Cilium's host identity)."""
    pods = [p for p in map(_pod, all_pods) if p]
    local = [(p, iface) for obj, iface in endpoints if (p := _pod(obj))]
    isolations = _isolations(policies, [p for p, _ in local])
    context = (pods, _namespace_labels(namespaces, pods))
    rules = {d: [r for i in isolations if i.direction == d
                 for r in _direction_rules(i.policy, d, i.selected, *context, verdict=f"goto allow-{d}")]
             for d in ("ingress", "egress")}
    deny = ("reject with icmp type admin-prohibited" if mode is PolicyMode.REJECT else "drop")
    devices = ", ".join(f'"{iface}"' for iface in sorted(iface for _, iface in local))
    hooks = [
        _chain("from-container", [
            f"type filter hook ingress devices = {{ {devices} }} priority filter; policy accept;",
            *_established("egress", "ingress", "daddr"),
            "ip saddr @egress-isolated jump egress",
            "goto allow-egress",
        ]),
        _chain("to-container", [
            f"type filter hook egress devices = {{ {devices} }} priority filter; policy accept;",
            *_established("ingress", "egress", "saddr"),
            "ip daddr @ingress-isolated jump ingress",
            "goto allow-ingress",
        ]),
    ] if local else []
    body = "".join([
        *(_flow_set(f"ct-{d}", "ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service", "1h")
          for d in ("egress", "ingress")),
        *(_flow_set(f"echo-{d}", None, "1m") for d in ("egress", "ingress")),
        _set("host", "ipv4_addr", list(host_ips)),
        _set("ingress-isolated", "ipv4_addr", [p.ip for p in _isolated(isolations, "ingress")]),
        _set("egress-isolated", "ipv4_addr", [p.ip for p in _isolated(isolations, "egress")]),
        _chain("egress", [*rules["egress"], f'counter {deny} comment "Policy denied"']),
        _chain("ingress", [*rules["ingress"], 'counter drop comment "Policy denied"']),
        *(_chain(f"allow-{d}", [f"{_PORTS} update @ct-{d} {{ {_FLOW} }}",
                                f"icmp type echo-request update @echo-{d} {{ ip saddr . ip daddr . icmp id }}",
                                "accept"]) for d in ("egress", "ingress")),
        *hooks,
    ])
    table = f"netdev {CILIUM_TABLE}"
    return f"table {table} {{}}\ndelete table {table}\ntable {table} {{\n{body}}}\n"


def _established(mine: str, theirs: str, host_field: str) -> list[str]:
    """What passes a hook without a policy check: not IPv4, the node itself, a flow this side's
    policy let through (`mine`), the reply of one the other side's did (`theirs`), ICMP errors."""
    return [
        "meta protocol != ip accept",
        f"ip {host_field} @host accept",
        f"{_PORTS} {_FLOW} @ct-{mine} accept",
        f"{_PORTS} {_REPLY} @ct-{theirs} accept",
        f"icmp type echo-request ip saddr . ip daddr . icmp id @echo-{mine} accept",
        f"icmp type echo-reply ip daddr . ip saddr . icmp id @echo-{theirs} accept",
        "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept",
    ]


def _flow_set(name: str, type_: str | None, timeout: str) -> str:
    """A dynamic set of flows with a timeout; without `type_`, an echo's (source, destination, id)."""
    kind = f"type {type_}" if type_ else "typeof ip saddr . ip daddr . icmp id"
    return f"\tset {name} {{\n\t\t{kind}\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}\n\t}}\n"


def pod_firewall_chain(namespace: str, name: str) -> str:
    """kube-router's pod chain name: base32 of sha256(namespace + name + sync version), 16
    characters; the lab has no sync version, so a pod keeps its chain name."""
    digest = hashlib.sha256(f"{namespace}{name}".encode()).digest()
    return POD_CHAIN_PREFIX + base64.b32encode(digest).decode()[:16]


def _pod(obj: dict) -> _Pod | None:
    """A pod policies can select or name as a peer: has an IPv4 pod IP, not hostNetwork, running."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    ip = status.get("podIP")
    if not ip or ":" in ip or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ports = tuple(
        (p["name"], p.get("protocol") or "TCP", int(p["containerPort"]))
        for c in spec.get("containers") or [] for p in c.get("ports") or [] if p.get("name")
    )
    return _Pod(meta.get("namespace") or "default", meta.get("name", ""), ip, dict(meta.get("labels") or {}), ports)


def _namespace_labels(namespaces: list[dict], pods: list[_Pod]) -> dict[str, dict]:
    labels = {p.namespace: {NS_NAME_LABEL: p.namespace} for p in pods}
    for ns in namespaces:
        meta = ns.get("metadata") or {}
        labels[meta["name"]] = {**(meta.get("labels") or {}), NS_NAME_LABEL: meta["name"]}
    return labels


def _policy_key(policy: dict) -> tuple[str, str]:
    meta = policy.get("metadata") or {}
    return meta.get("namespace") or "default", meta.get("name", "")


def _policy_types(spec: dict) -> list[str]:
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def _direction_rules(policy: dict, direction: str, selected: tuple[_Pod, ...], pods: list[_Pod],
                     ns_labels: dict[str, dict], verdict: str | None = None) -> list[str]:
    """The policy's rules for `direction` as nft matches ending in `verdict` (default: ingress
    accepts, egress returns for the destination's check)."""
    ns, name = _policy_key(policy)
    peer_key, default = ("from", "accept") if direction == "ingress" else ("to", "return")
    verdict = verdict or default
    local_field, peer_field = ("daddr", "saddr") if direction == "ingress" else ("saddr", "daddr")
    rules = []
    for index, rule in enumerate((policy.get("spec") or {}).get(direction) or []):
        peer_specs = rule.get(peer_key) or []
        peers = _peer_networks(peer_specs, ns, pods, ns_labels) if peer_specs else None
        if peers == ():
            continue  # the peers select nothing: the rule allows nothing
        side = _Side(local_field, tuple(p.ip for p in selected), peer_field, peers)
        comment = f'comment "{ns}/{name} {direction}[{index}]"'
        for match in _port_matches(side, rule.get("ports") or [], selected, pods):
            rules.append(f"{match} {verdict} {comment}")
    return rules


def _peer_networks(peer_specs: list[dict], ns: str, pods: list[_Pod], ns_labels: dict[str, dict]) -> tuple[str, ...]:
    nets: list[ipaddress.IPv4Network] = []
    for peer in peer_specs:
        if "ipBlock" in peer:
            nets += _ip_block(peer["ipBlock"])
        else:
            nets += [ipaddress.IPv4Network(p.ip) for p in _peer_pods(peer, ns, pods, ns_labels)]
    return tuple(_fmt_net(n) for n in ipaddress.collapse_addresses(nets))


def _peer_pods(peer: dict, ns: str, pods: list[_Pod], ns_labels: dict[str, dict]) -> list[_Pod]:
    pod_sel = from_label_selector(peer.get("podSelector") or {})
    if "namespaceSelector" in peer:
        ns_sel = from_label_selector(peer.get("namespaceSelector") or {})
        in_scope = [p for p in pods if ns_sel.matches(ns_labels.get(p.namespace, {}))]
    else:
        in_scope = [p for p in pods if p.namespace == ns]
    return [p for p in in_scope if pod_sel.matches(p.labels)]


def _ip_block(block: dict) -> list[ipaddress.IPv4Network]:
    cidr = ipaddress.ip_network(block["cidr"], strict=False)
    if cidr.version != 4:
        return []
    remaining = [cidr]
    for text in block.get("except") or []:
        hole = ipaddress.ip_network(text, strict=False)
        remaining = [piece for net in remaining for piece in _subtract(net, hole)]
    return remaining


def _subtract(net: ipaddress.IPv4Network, hole) -> Iterable[ipaddress.IPv4Network]:
    if hole.version != 4 or not net.overlaps(hole):
        return [net]
    if net.subnet_of(hole):
        return []
    return net.address_exclude(hole)


def _port_matches(side: _Side, ports: list[dict], selected: tuple[_Pod, ...], pods: list[_Pod]) -> list[str]:
    """One nft match per protocol (numbered ports) and per named port; no ports: one match for all."""
    base = f"ip {side.local_field} {_anon(side.local_ips)}"
    if side.peers is not None:
        base += f" ip {side.peer_field} {_anon(side.peers)}"
    if not ports:
        return [base]
    numbered: dict[str, list[tuple[int, int]] | None] = {}  # protocol -> port ranges, None: any port
    matches = []
    for port in ports:
        proto, value = port.get("protocol") or "TCP", port.get("port")
        if isinstance(value, str):
            matches += _named_port_match(side, base, value, proto, selected, pods)
        elif value is None:
            numbered[proto] = None
        elif numbered.get(proto, []) is not None:
            numbered.setdefault(proto, []).append((int(value), int(port.get("endPort") or value)))
    for proto, ranges in sorted(numbered.items()):
        dport = "" if ranges is None else f" th dport {_anon(_merge_ranges(ranges))}"
        matches.append(f"{base} meta l4proto {_NFT_PROTO[proto]}{dport}")
    return matches


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[str]:
    """Disjoint `a` / `a-b` port ranges: nft rejects overlapping intervals in a set."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, max(start, end)])
    return [str(a) if a == b else f"{a}-{b}" for a, b in merged]


def _named_port_match(side: _Side, base: str, port_name: str, proto: str, selected: tuple[_Pod, ...],
                      pods: list[_Pod]) -> list[str]:
    """`ip daddr . th dport { ip . port }` over the destination pods that define `port_name`."""
    if side.local_field == "daddr":
        destinations = selected
    else:
        peer_nets = [ipaddress.ip_network(n) for n in side.peers] if side.peers is not None else None
        destinations = [p for p in pods if peer_nets is None
                        or any(ipaddress.ip_address(p.ip) in n for n in peer_nets)]
    pairs = sorted({(p.ip, port) for p in destinations
                    if (port := p.named_port(port_name, proto)) is not None}, key=lambda x: (_ip_key(x[0]), x[1]))
    if not pairs:
        return []
    elements = _anon([f"{ip} . {port}" for ip, port in pairs])
    return [f"{base} meta l4proto {_NFT_PROTO[proto]} ip daddr . th dport {elements}"]


def _anon(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _fmt_net(net: ipaddress.IPv4Network) -> str:
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def _ip_key(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def _sorted_ips(ips: set[str]) -> list[str]:
    return sorted(ips, key=_ip_key)


def _chain(name: str, lines: list[str]) -> str:
    return f"\tchain {name} {{\n" + "".join(f"\t\t{line}\n" for line in lines) + "\t}\n"


def _map(name: str, elements: list[str], key: str = "ipv4_addr") -> str:
    elems = f"\t\telements = {{ {', '.join(elements)} }}\n" if elements else ""
    return f"\tmap {name} {{\n\t\ttype {key} : verdict\n{elems}\t}}\n"


def _set(name: str, type_: str, elements: list[str]) -> str:
    elems = f"\t\telements = {{ {', '.join(elements)} }}\n" if elements else ""
    return f"\tset {name} {{\n\t\ttype {type_}\n{elems}\t}}\n"
