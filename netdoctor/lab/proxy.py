"""kube-proxy for the lab: Services and EndpointSlices rendered as one nftables table per node.

The lab's data plane calls `render_kube_proxy` whenever Services, EndpointSlices or nodes change
and applies the script with `ip netns exec NODE nft -f -` (`render_socket_lb`, Cilium's
translation at the socket, goes to every pod's namespace instead; the iptables mode, in
netdoctor.lab.iptables, reads `node_views`). Without `previous` the script replaces
the whole table atomically; given the script applied last, it rewrites the table in place
(rules, maps, stale chains) and keeps the session-affinity sets with their entries, as
kube-proxy's partial syncs do. `programmed_services` tells tests and debug output which
(Service, port) -> endpoints the script programs. Pure functions, no I/O.

Semantics and names follow kube-proxy's nftables mode (pkg/proxy/nftables):
- Filter chains at dstnat-10 see destinations before DNAT: `service-endpoints-check` drops or
  rejects a ClusterIP without usable endpoint (in prerouting and output: kube-proxy hooks it on
  input, forward and output, the same for a ClusterIP left untranslated), and
  `nodeport-endpoints-check` (input) a NodePort left untranslated; `cluster-ips-check` (after
  DNAT, at dstnat+10) rejects ClusterIP ports no Service declares. NAT: `services` in prerouting
  and output dispatches ClusterIPs and NodePorts (`fib daddr type local`); `masquerading` in
  postrouting.
- Endpoints (CategorizeEndpoints): ready ones; none ready anywhere -> serving+terminating ones;
  `publishNotReadyAddresses` -> all. Local policy: this node's ready ones, else its
  serving+terminating ones. The slice's port with the Service port's name gives the target port.
- `service-…` balances over cluster endpoints, `local-…` over this node's; each endpoint has
  `endpoint-…` (hairpin masquerade, affinity update, DNAT). No endpoint anywhere: reject.
- internalTrafficPolicy Local: the ClusterIP goes to `local-…`; a node without a local endpoint
  drops it (while the Service has endpoints elsewhere).
- NodePort (NodePort/LoadBalancer): `external-…`. Cluster policy: masquerade, then `service-…`.
  externalTrafficPolicy Local: pod traffic and the node's own traffic short-circuit to
  `service-…` (the node's masqueraded), anything else goes to `local-…` unmasqueraded (the
  client IP is kept); a node without a local endpoint drops it.
- sessionAffinity ClientIP: a set per endpoint (`affinity-…`, flags dynamic,timeout, the
  Service's timeoutSeconds); the policy chain sends a known client to its endpoint, the
  endpoint chain records it.
- Masquerade: hairpin, NodePort (cluster policy), and ClusterIP traffic from outside the cluster
  CIDR. Marked with 0x4000, masqueraded in postrouting.
- Headless Services (clusterIP None) and ExternalName Services get no rules.
Not modelled: externalIPs, load-balancer IPs and their source ranges, topology hints, IPv6.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MASQ_MARK = 0x4000
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_NFT_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
AFFINITY_PREFIX = "affinity-"
_DECLARATION = re.compile(r"^\t(chain|set|map) (\S+) \{$", re.M)


@dataclass(frozen=True)
class NodeInfo:
    """The node being programmed. The rules use `name` (Local traffic policies) and
    `cluster_cidr` (what is pod traffic); NodePorts match every local address through `fib`, so
    `underlay_ip` and `pod_cidr` only describe the node for callers and debug."""

    name: str
    underlay_ip: str
    pod_cidr: str
    cluster_cidr: str


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node_name: str | None = None

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    """One programmed (Service, port) and the endpoints traffic to it may be DNATed to."""

    namespace: str
    service: str
    port_name: str
    protocol: str  # TCP, UDP or SCTP
    cluster_ip: str
    port: int
    node_port: int | None
    internal_local: bool  # internalTrafficPolicy: Local
    external_local: bool  # externalTrafficPolicy: Local
    affinity_seconds: int | None  # sessionAffinity ClientIP: its timeout
    ready: tuple[Endpoint, ...]  # ready (all of them with publishNotReadyAddresses)
    terminating: tuple[Endpoint, ...]  # not ready but serving and terminating: the fallback

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.service}/{self.protocol.lower()}/{self.port_name}"

    @property
    def nft_proto(self) -> str:
        return _NFT_PROTO[self.protocol]

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The cluster-wide endpoints: the ready ones, or else the serving terminating ones."""
        return self.ready or self.terminating

    def local_endpoints(self, node_name: str) -> tuple[Endpoint, ...]:
        """This node's endpoints for a Local policy: its ready ones, or else its serving terminating ones."""
        return _on(self.ready, node_name) or _on(self.terminating, node_name)

    @property
    def uses_cluster(self) -> bool:
        return not self.internal_local or (self.node_port is not None and not self.external_local)

    @property
    def uses_local(self) -> bool:
        return self.internal_local or (self.node_port is not None and self.external_local)


@dataclass(frozen=True)
class NodeView:
    """What one node programs for one ServicePort (kube-proxy's per-sync categorisation); the
    iptables renderer reads it too."""

    sp: ServicePort
    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]

    @property
    def has_endpoints(self) -> bool:
        return bool(self.sp.endpoints)

    @property
    def has_internal(self) -> bool:
        return bool(self.local) if self.sp.internal_local else self.has_endpoints

    @property
    def has_external(self) -> bool:
        return bool(self.local) if self.sp.external_local else self.has_endpoints

    @property
    def reachable(self) -> tuple[Endpoint, ...]:
        return self.cluster + tuple(e for e in self.local if e not in self.cluster)

    def chain(self, local: bool) -> str:
        return _name("local" if local else "service", self.sp)


def programmed_services(services: list[dict], slices: list[dict]) -> list[ServicePort]:
    """Every (Service, port) that gets ClusterIP rules, with the endpoints it balances over."""
    result = []
    for svc in services:
        spec = svc.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None" or spec.get("type") == "ExternalName":
            continue
        own_slices = _slices_of(svc, slices)
        for port in spec.get("ports") or []:
            result.append(_service_port(svc, port, own_slices))
    return sorted(result, key=lambda sp: sp.key)


def render_kube_proxy(table: str, services: list[dict], slices: list[dict], node: NodeInfo,
                      previous: str | None = None) -> str:
    """The nftables script for one node; `previous` is the script applied last (None: replace the table)."""
    views = node_views(services, slices, node)
    declarations = [*_maps(views), *_affinity_sets(views), *_chains(views, node)]
    return _script(table, "".join(declarations), previous)


def render_socket_lb(table: str, services: list[dict], slices: list[dict], node: NodeInfo,
                     previous: str | None = None) -> str:
    """Cilium's socket-level load balancing (kube-proxy replacement) as nftables, for the network
    namespace of one pod of `node`, or of the node itself (its hostNetwork processes): every
    ClusterIP is DNATed on the output hook, before the first packet exists on any interface, so the
    pod's eth0 only ever carries the backend's address. The backends are the node's view, as
    kube-proxy's (traffic policies, terminating fallback, ClientIP affinity per client). A Service
    without a usable backend refuses the connect or send with host unreachable (Cilium's connect
    and sendmsg hooks return EHOSTUNREACH). No NodePorts, no masquerade: nothing crosses a node
    untranslated. `previous` as for render_kube_proxy."""
    views = node_views(services, slices, node)
    service_ips, no_backend, sets, chains = [], [], [], []
    for view in views:
        sp = view.sp
        ident = f"{sp.cluster_ip} . {sp.nft_proto} . {sp.port}"
        endpoints = view.local if sp.internal_local else view.cluster
        if not endpoints:
            no_backend.append(f"{ident} : goto no-backend")
            continue
        service_ips.append(f"{ident} : goto {view.chain(sp.internal_local)}")
        chains.append(_chain(view.chain(sp.internal_local), _balance(sp, endpoints)))
        for ep in endpoints:
            affinity = [f"update @{_affinity_name(sp, ep)} {{ ip saddr }}"] if sp.affinity_seconds else []
            sets += [_affinity_set(sp, ep)] if sp.affinity_seconds else []
            chains.append(_chain(_endpoint_chain(sp, ep), [*affinity, f"meta l4proto {sp.nft_proto} dnat to {ep}"]))
    body = "".join([
        _set("service-ips", "ipv4_addr . inet_proto . inet_service : verdict", service_ips),
        _set("no-backend-services", "ipv4_addr . inet_proto . inet_service : verdict", no_backend),
        *sets,
        _chain("filter-output", ["ip daddr . meta l4proto . th dport vmap @no-backend-services"],
               "type filter hook output priority -110; policy accept;"),
        _chain("nat-output", ["ip daddr . meta l4proto . th dport vmap @service-ips"],
               "type nat hook output priority -100; policy accept;"),
        _chain("no-backend", ["reject with icmp type host-unreachable"]),
        *chains,
    ])
    return _script(table, body, previous)


def node_views(services: list[dict], slices: list[dict], node: NodeInfo) -> list[NodeView]:
    """What `node` programs for each (Service, port)."""
    return [_view(sp, node) for sp in programmed_services(services, slices)]


def _script(table: str, body: str, previous: str | None) -> str:
    if previous is None:
        return f"table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{\n{body}}}\n"
    cleanup = _cleanup(table, previous, body)
    return f"table ip {table} {{}}\nflush table ip {table}\n{cleanup}table ip {table} {{\n{body}}}\n"


# ---- what each node programs ------------------------------------------------------------------

def _slices_of(svc: dict, slices: list[dict]) -> list[dict]:
    meta = svc.get("metadata") or {}
    return [
        s for s in slices
        if (s.get("metadata") or {}).get("namespace") == meta.get("namespace")
        and ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == meta.get("name")
        and s.get("addressType", "IPv4") == "IPv4"
    ]


def _service_port(svc: dict, port: dict, slices: list[dict]) -> ServicePort:
    spec, meta = svc["spec"], svc.get("metadata") or {}
    protocol = port.get("protocol") or "TCP"
    ready, terminating = _endpoints(port.get("name") or "", protocol, slices,
                                    bool(spec.get("publishNotReadyAddresses")))
    affinity = None
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int(((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds", 10800))
    return ServicePort(
        namespace=meta.get("namespace") or "default",
        service=meta["name"],
        port_name=port.get("name") or "",
        protocol=protocol,
        cluster_ip=spec["clusterIP"],
        port=int(port["port"]),
        node_port=port.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else None,
        internal_local=spec.get("internalTrafficPolicy") == "Local",
        external_local=spec.get("externalTrafficPolicy") == "Local",
        affinity_seconds=affinity,
        ready=ready,
        terminating=terminating,
    )


def _endpoints(port_name: str, protocol: str, slices: list[dict],
               all_addresses: bool) -> tuple[tuple[Endpoint, ...], tuple[Endpoint, ...]]:
    ready, terminating = {}, {}
    for sl in slices:
        target = _slice_port(sl, port_name, protocol)
        if target is None:
            continue
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            for ip in ep.get("addresses") or []:
                endpoint = Endpoint(ip, target, ep.get("nodeName"))
                if all_addresses or cond.get("ready") is not False:
                    ready.setdefault(ip, endpoint)
                elif cond.get("serving") and cond.get("terminating"):
                    terminating.setdefault(ip, endpoint)
    return _by_ip(ready), _by_ip(terminating)


def _by_ip(endpoints: dict[str, Endpoint]) -> tuple[Endpoint, ...]:
    return tuple(endpoints[ip] for ip in sorted(endpoints, key=_ip_sort_key))


def _on(endpoints: tuple[Endpoint, ...], node_name: str) -> tuple[Endpoint, ...]:
    return tuple(e for e in endpoints if e.node_name == node_name)


def _slice_port(sl: dict, port_name: str, protocol: str) -> int | None:
    for p in sl.get("ports") or []:
        if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
            return p.get("port")
    return None


def _ip_sort_key(ip: str) -> tuple[int, ...]:
    return tuple(int(octet) for octet in ip.split("."))


def _view(sp: ServicePort, node: NodeInfo) -> NodeView:
    return NodeView(sp, sp.endpoints if sp.uses_cluster else (),
                     sp.local_endpoints(node.name) if sp.uses_local else ())


# ---- maps and sets ------------------------------------------------------------------------------

def _maps(views: list[NodeView]) -> list[str]:
    service_ips, nodeports, no_ep_services, no_ep_nodeports = [], [], [], []
    for v in views:
        sp = v.sp
        ident = f"{sp.cluster_ip} . {sp.nft_proto} . {sp.port}"
        if v.has_internal:
            service_ips.append(f"{ident} : goto {v.chain(sp.internal_local)}")
        else:
            no_ep_services.append(f"{ident} : {_no_endpoint_verdict(v)}")
        if sp.node_port is None:
            continue
        np_ident = f"{sp.nft_proto} . {sp.node_port}"
        if v.has_endpoints:
            nodeports.append(f"{np_ident} : goto {_name('external', sp)}")
        if not v.has_external:
            no_ep_nodeports.append(f"{np_ident} : {_no_endpoint_verdict(v)}")
    cluster_ips = sorted({v.sp.cluster_ip for v in views}, key=_ip_sort_key)
    return [
        _set("cluster-ips", "ipv4_addr", cluster_ips),
        _set("service-ips", "ipv4_addr . inet_proto . inet_service : verdict", service_ips),
        _set("service-nodeports", "inet_proto . inet_service : verdict", nodeports),
        _set("no-endpoint-services", "ipv4_addr . inet_proto . inet_service : verdict", no_ep_services),
        _set("no-endpoint-nodeports", "inet_proto . inet_service : verdict", no_ep_nodeports),
    ]


def _no_endpoint_verdict(view: NodeView) -> str:
    """No endpoint anywhere: reject; endpoints only on other nodes (a Local policy): drop."""
    return "goto drop-chain" if view.has_endpoints else "goto reject-chain"


def _affinity_sets(views: list[NodeView]) -> list[str]:
    return [_affinity_set(v.sp, ep) for v in views if v.sp.affinity_seconds for ep in v.reachable]


def _affinity_set(sp: ServicePort, ep: Endpoint) -> str:
    return (f"\tset {_affinity_name(sp, ep)} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n"
            f"\t\ttimeout {sp.affinity_seconds}s\n\t}}\n")


# ---- chains -------------------------------------------------------------------------------------

def _chains(views: list[NodeView], node: NodeInfo) -> list[str]:
    chains = [
        *_base_chains(),
        _chain("mark-for-masquerade", [f"meta mark set meta mark | {MASQ_MARK:#x}"]),
        _chain("masquerading", [
            f"meta mark & {MASQ_MARK:#x} == 0 return",
            f"meta mark set meta mark ^ {MASQ_MARK:#x}",
            "masquerade fully-random",
        ]),
        _chain("services", [
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
        ]),
        _chain("service-endpoints-check", ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"]),
        _chain("nodeport-endpoints-check", [
            "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"]),
        _chain("cluster-ips-check", ["ip daddr @cluster-ips reject"]),
        _chain("reject-chain", ["reject"]),
        _chain("drop-chain", ["drop"]),
    ]
    for view in views:
        chains.extend(_service_chains(view, node))
    return chains


def _base_chains() -> list[str]:
    return [
        _chain("filter-prerouting", ["ct state new jump service-endpoints-check"],
               "type filter hook prerouting priority -110; policy accept;"),
        _chain("filter-input", ["ct state new jump nodeport-endpoints-check"],
               "type filter hook input priority -110; policy accept;"),
        _chain("filter-output", ["ct state new jump service-endpoints-check"],
               "type filter hook output priority -110; policy accept;"),
        _chain("nat-prerouting", ["jump services"], "type nat hook prerouting priority dstnat; policy accept;"),
        _chain("nat-output", ["jump services"], "type nat hook output priority -100; policy accept;"),
        _chain("filter-prerouting-post-dnat", ["ct state new jump cluster-ips-check"],
               "type filter hook prerouting priority -90; policy accept;"),
        _chain("filter-output-post-dnat", ["ct state new jump cluster-ips-check"],
               "type filter hook output priority -90; policy accept;"),
        _chain("nat-postrouting", ["jump masquerading"], "type nat hook postrouting priority srcnat; policy accept;"),
    ]


def _service_chains(view: NodeView, node: NodeInfo) -> list[str]:
    sp, chains = view.sp, []
    for local, endpoints in ((False, view.cluster), (True, view.local)):
        if endpoints:
            masquerade = []
            if view.has_internal and local == sp.internal_local:
                masquerade = [f"ip daddr {sp.cluster_ip} {sp.nft_proto} dport {sp.port} "
                              f"ip saddr != {node.cluster_cidr} jump mark-for-masquerade"]
            chains.append(_chain(view.chain(local), [*masquerade, *_balance(sp, endpoints)]))
    if sp.node_port is not None and view.has_endpoints:
        chains.append(_chain(_name("external", sp), _external_rules(view, node)))
    for ep in view.reachable:
        affinity = [f"update @{_affinity_name(sp, ep)} {{ ip saddr }}"] if sp.affinity_seconds else []
        chains.append(_chain(_endpoint_chain(sp, ep), [
            f"ip saddr {ep.ip} jump mark-for-masquerade",
            *affinity,
            f"meta l4proto {sp.nft_proto} dnat to {ep}",
        ]))
    return chains


def _external_rules(view: NodeView, node: NodeInfo) -> list[str]:
    """NodePort traffic: masqueraded to any endpoint, or (Local) kept to this node's endpoints."""
    sp = view.sp
    if not sp.external_local:
        return ["jump mark-for-masquerade", f"goto {view.chain(False)}"]
    rules = []
    if view.cluster:
        cluster = view.chain(False)
        rules = [f"ip saddr {node.cluster_cidr} goto {cluster}",
                 "fib saddr type local jump mark-for-masquerade",
                 f"fib saddr type local goto {cluster}"]
    return rules + ([f"goto {view.chain(True)}"] if view.has_external else [])


def _balance(sp: ServicePort, endpoints: tuple[Endpoint, ...]) -> list[str]:
    """Affinity first (a known client goes back to its endpoint), then a random pick."""
    sticky = [f"ip saddr @{_affinity_name(sp, ep)} goto {_endpoint_chain(sp, ep)}"
              for ep in endpoints] if sp.affinity_seconds else []
    picks = ", ".join(f"{i} : goto {_endpoint_chain(sp, ep)}" for i, ep in enumerate(endpoints))
    return [*sticky, f"numgen random mod {len(endpoints)} vmap {{ {picks} }}"]


def _name(kind: str, sp: ServicePort) -> str:
    """kube-proxy-style chain names: a short hash keeps them unique, the rest keeps them readable."""
    digest = hashlib.sha256(sp.key.encode()).hexdigest()[:8].upper()
    return f"{kind}-{digest}-{sp.key}"


def _endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    return f"{_name('endpoint', sp)}__{ep.ip}/{ep.port}"


def _affinity_name(sp: ServicePort, ep: Endpoint) -> str:
    return f"{_name(AFFINITY_PREFIX.rstrip('-'), sp)}__{ep.ip}/{ep.port}"


def _chain(name: str, rules: list[str], base: str | None = None) -> str:
    lines = [f"\tchain {name} {{"]
    if base:
        lines.append(f"\t\t{base}")
    lines.extend(f"\t\t{rule}" for rule in rules)
    lines.append("\t}")
    return "\n".join(lines) + "\n"


def _set(name: str, type_: str, elements: list[str]) -> str:
    """A named set, or a map when `type_` has a `: verdict` part."""
    keyword = "map" if ":" in type_ else "set"
    elems = f"\t\telements = {{ {', '.join(elements)} }}\n" if elements else ""
    return f"\t{keyword} {name} {{\n\t\ttype {type_}\n{elems}\t}}\n"


# ---- rewriting in place -----------------------------------------------------------------------

def _cleanup(table: str, previous: str, body: str) -> str:
    """After `flush table` (every rule gone): empty the maps and sets the new body declares again,
    delete the ones it doesn't (and an affinity set whose definition changed), then the chains it
    doesn't; affinity sets that stay keep their entries. Maps go first: their elements refer to
    chains."""
    before, after = _declarations(previous), _declarations(body)
    lines = []
    for (kind, name), text in before.items():
        if kind == "chain":
            continue
        if name.startswith(AFFINITY_PREFIX):
            if after.get((kind, name)) != text:
                lines.append(f"delete {kind} ip {table} {name}")
        else:
            lines.append(f"{'flush' if (kind, name) in after else 'delete'} {kind} ip {table} {name}")
    lines += [f"delete chain ip {table} {name}" for kind, name in before if kind == "chain" and (kind, name) not in after]
    return "".join(f"{line}\n" for line in lines)


def _declarations(script: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> its declaration text, for every chain, set and map in a rendered script."""
    found = {}
    for match in _DECLARATION.finditer(script):
        end = script.index("\n\t}\n", match.end())
        found[(match.group(1), match.group(2))] = script[match.start():end]
    return found
