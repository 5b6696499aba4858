"""kube-proxy for the lab: Services and EndpointSlices rendered as one nftables table per node.

The lab's proxy controller calls `render_kube_proxy` whenever Services, EndpointSlices or nodes
change and applies the script with `ip netns exec NODE nft -f -`; the script replaces the whole
table atomically, so it can be applied again and again. `programmed_services` tells tests and
debug output which (Service, port) -> endpoints the script programs. Pure functions, no I/O.

Semantics follow kube-proxy's nftables mode:
- ClusterIP: DNAT in nat prerouting (pod traffic) and nat output at -100 (node-local processes),
  one random pick among the endpoints (`numgen random mod N vmap`), one chain per endpoint.
- Endpoints: ready ones; none ready -> serving+terminating ones (kube-proxy's fallback);
  `publishNotReadyAddresses` -> all. The slice's port with the Service port's name gives the
  target port number (named targetPorts are resolved there by the EndpointSlice controller).
- No usable endpoint -> `reject` (ICMP port-unreachable) in filter hooks at -110, before NAT.
  A ClusterIP on a port no Service declares is rejected too.
- NodePort (NodePort/LoadBalancer) on the node's own addresses (`fib daddr type local`), marked
  for masquerade; externalTrafficPolicy Local -> local endpoints only, no masquerade, else drop.
- Masquerade: hairpin (endpoint reaching itself), NodePort traffic, and ClusterIP traffic from
  outside the cluster CIDR. Marked with 0x4000 in prerouting/output, masqueraded in postrouting.
- Headless Services (clusterIP None) and ExternalName Services get no rules.
Not modelled: session affinity, externalIPs, load-balancer IPs, internalTrafficPolicy, IPv6.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MASQ_MARK = 0x4000
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_NFT_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True)
class NodeInfo:
    """The node being programmed. The rules use `name` (externalTrafficPolicy Local) and
    `cluster_cidr` (masquerade what comes from outside it); NodePorts match every local address
    through `fib`, so `underlay_ip` and `pod_cidr` only describe the node for callers and debug."""

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
    """One programmed (Service, port): what traffic to it is DNATed to."""

    namespace: str
    service: str
    port_name: str
    protocol: str  # TCP, UDP or SCTP
    cluster_ip: str
    port: int
    node_port: int | None
    external_local: bool  # externalTrafficPolicy: Local
    endpoints: tuple[Endpoint, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.service}/{self.protocol.lower()}/{self.port_name}"

    @property
    def nft_proto(self) -> str:
        return _NFT_PROTO[self.protocol]

    def local_endpoints(self, node_name: str) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.node_name == node_name)


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


def render_kube_proxy(table: str, services: list[dict], slices: list[dict], node: NodeInfo) -> str:
    """The complete nftables script for one node: deletes and recreates `table`."""
    ports = programmed_services(services, slices)
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
        _chain("endpoints-check", [
            "ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
            "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
        ]),
        _chain("cluster-ips-check", ["ip daddr @cluster-ips reject"]),
        _chain("reject-chain", ["reject"]),
        _chain("drop-chain", ["drop"]),
    ]
    for sp in ports:
        chains.extend(_service_chains(sp, node))
    maps = _maps(ports, node)
    body = "\n".join([*maps, *chains])
    return f"table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{\n{body}}}\n"


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
    return ServicePort(
        namespace=meta.get("namespace") or "default",
        service=meta["name"],
        port_name=port.get("name") or "",
        protocol=protocol,
        cluster_ip=spec["clusterIP"],
        port=int(port["port"]),
        node_port=port.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else None,
        external_local=spec.get("externalTrafficPolicy") == "Local",
        endpoints=_endpoints(port.get("name") or "", protocol, slices,
                             bool(spec.get("publishNotReadyAddresses"))),
    )


def _endpoints(port_name: str, protocol: str, slices: list[dict], all_addresses: bool) -> tuple[Endpoint, ...]:
    ready, fallback = {}, {}
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
                    fallback.setdefault(ip, endpoint)
    chosen = ready or fallback
    return tuple(chosen[ip] for ip in sorted(chosen, key=_ip_sort_key))


def _slice_port(sl: dict, port_name: str, protocol: str) -> int | None:
    for p in sl.get("ports") or []:
        if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
            return p.get("port")
    return None


def _ip_sort_key(ip: str) -> tuple[int, ...]:
    return tuple(int(octet) for octet in ip.split("."))


def _base_chains() -> list[str]:
    return [
        _chain("filter-prerouting", ["ct state new jump endpoints-check"],
               "type filter hook prerouting priority -110; policy accept;"),
        _chain("filter-output", ["ct state new jump endpoints-check"],
               "type filter hook output priority -110; policy accept;"),
        _chain("nat-prerouting", ["jump services"],
               "type nat hook prerouting priority dstnat; policy accept;"),
        _chain("nat-output", ["jump services"],
               "type nat hook output priority -100; policy accept;"),
        _chain("filter-prerouting-post-dnat", ["ct state new jump cluster-ips-check"],
               "type filter hook prerouting priority -90; policy accept;"),
        _chain("filter-output-post-dnat", ["ct state new jump cluster-ips-check"],
               "type filter hook output priority -90; policy accept;"),
        _chain("nat-postrouting", ["jump masquerading"],
               "type nat hook postrouting priority srcnat; policy accept;"),
    ]


def _maps(ports: list[ServicePort], node: NodeInfo) -> list[str]:
    service_ips, nodeports, no_ep_services, no_ep_nodeports = [], [], [], []
    for sp in ports:
        ident = f"{sp.cluster_ip} . {sp.nft_proto} . {sp.port}"
        if sp.endpoints:
            service_ips.append(f"{ident} : goto {_name('service', sp)}")
        else:
            no_ep_services.append(f"{ident} : goto reject-chain")
        if sp.node_port is None:
            continue
        np_ident = f"{sp.nft_proto} . {sp.node_port}"
        if _external_endpoints(sp, node):
            nodeports.append(f"{np_ident} : goto {_name('external', sp)}")
        elif sp.external_local and sp.endpoints:
            no_ep_nodeports.append(f"{np_ident} : goto drop-chain")
        else:
            no_ep_nodeports.append(f"{np_ident} : goto reject-chain")
    cluster_ips = sorted({sp.cluster_ip for sp in ports}, key=_ip_sort_key)
    return [
        _set("cluster-ips", "ipv4_addr", cluster_ips),
        _set("service-ips", "ipv4_addr . inet_proto . inet_service : verdict", service_ips),
        _set("service-nodeports", "inet_proto . inet_service : verdict", nodeports),
        _set("no-endpoint-services", "ipv4_addr . inet_proto . inet_service : verdict", no_ep_services),
        _set("no-endpoint-nodeports", "inet_proto . inet_service : verdict", no_ep_nodeports),
    ]


def _external_endpoints(sp: ServicePort, node: NodeInfo) -> tuple[Endpoint, ...]:
    return sp.local_endpoints(node.name) if sp.external_local else sp.endpoints


def _service_chains(sp: ServicePort, node: NodeInfo) -> list[str]:
    if not sp.endpoints:
        return []
    match = f"ip daddr {sp.cluster_ip} {sp.nft_proto} dport {sp.port}"
    chains = [_chain(_name("service", sp), [
        f"{match} ip saddr != {node.cluster_cidr} jump mark-for-masquerade",
        _balance(sp, sp.endpoints),
    ])]
    external = _external_endpoints(sp, node)
    if sp.node_port is not None and external:
        rules = [] if sp.external_local else ["jump mark-for-masquerade"]
        chains.append(_chain(_name("external", sp), [*rules, _balance(sp, external)]))
    for ep in sp.endpoints:
        chains.append(_chain(_endpoint_chain(sp, ep), [
            f"ip saddr {ep.ip} jump mark-for-masquerade",
            f"meta l4proto {sp.nft_proto} dnat to {ep}",
        ]))
    return chains


def _balance(sp: ServicePort, endpoints: tuple[Endpoint, ...]) -> str:
    picks = ", ".join(f"{i} : goto {_endpoint_chain(sp, ep)}" for i, ep in enumerate(endpoints))
    return f"numgen random mod {len(endpoints)} vmap {{ {picks} }}"


def _name(kind: str, sp: ServicePort) -> str:
    """kube-proxy-style chain names: a short hash keeps them unique, the rest keeps them readable."""
    digest = hashlib.sha256(sp.key.encode()).hexdigest()[:8].upper()
    return f"{kind}-{digest}-{sp.key}"


def _endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    return f"{_name('endpoint', sp)}__{ep.ip}/{ep.port}"


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
