"""What the cluster is made of, refined from the devices the node captures listed.

Called by `verdict.judge` with the answer resolve read from the API (netdoctor.check.cluster_kind)
and the captures. Each CNI names its devices its own way (cni-dialects-facts §1–7): `cali…` host
veths and `vxlan.calico`/`tunl0`, `lxc…`/`cilium_host`/`cilium_vxlan`, `flannel.1`, `antrea-gw0`/
`antrea-tun0`, `eni…`, `kube-bridge`/`tun-…`, `weave`/`vxlan-6784`; kube-proxy in IPVS mode binds
Service IPs on `kube-ipvs0` (kube-router on `kube-dummy-if`). Devices confirm the API's answer,
fill in what it left unknown, or disagree (said, and the confidence drops). iptables/nftables
chains are not visible from a capture: the proxy's mode comes from the API. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from netdoctor.model import Capture, ClusterKind, Cni, CniKind, Confidence, Overlay, ProxyKind, ProxyMode, ServiceProxy
from netdoctor.observations import Interface, InterfaceKind, Inventory

GENEVE_PORT = 6081
SHOWN = 3  # device lines kept as evidence per kind of device


@dataclass(frozen=True)
class _Sign:
    """A device that names its CNI (and, for a tunnel, the overlay)."""

    cni: Cni
    overlay: Overlay | None
    line: str  # "node-1: flannel.1 (flannel's VXLAN device)"
    what: str  # groups the lines: one kind of device


def from_captures(kind: ClusterKind | None, captures: Iterable[Capture]) -> ClusterKind | None:
    """`refine` with the inventories of the node captures (a pod's own eth0 says nothing)."""
    return refine(kind, {c.node: c.inventory for c in captures if c.probe is None and c.node and c.inventory})


def refine(kind: ClusterKind | None, inventories: dict[str, Inventory]) -> ClusterKind | None:
    """The API's answer checked against the nodes' devices; None (not read) stays None."""
    if kind is None or not inventories:
        return kind
    signs = [s for node, inventory in sorted(inventories.items()) for s in _signs(node, inventory)]
    return ClusterKind(_cni(kind.cni, signs, inventories), _proxy(kind.proxy, inventories))


def cni_of(inventory: Inventory | None) -> Cni | None:
    """The CNI one node's devices name (the first sign), None when none does: for the hop judge's words."""
    return next((s.cni for s in _signs("", inventory)), None) if inventory else None


def _signs(node: str, inventory: Inventory) -> Iterable[_Sign]:
    routed_via = {r.device for r in inventory.routes}
    for i in inventory.interfaces:
        sign = _sign(i, routed_via)
        if sign is not None:
            cni, overlay, what = sign
            yield _Sign(cni, overlay, f"{node}: {i.name} ({what})", what)


def _sign(i: Interface, routed_via: set[str | None]) -> tuple[Cni, Overlay | None, str] | None:
    name, veth = i.name, i.kind is InterfaceKind.VETH
    if veth and name.startswith("cali"):
        return Cni.CALICO, None, "a Calico host veth"
    if name == "vxlan.calico":
        return Cni.CALICO, Overlay.VXLAN, "Calico's VXLAN device"
    if name == "tunl0" and name in routed_via:
        return Cni.CALICO, Overlay.IPIP, "Calico's IP-in-IP device, with routes"
    if (veth and name.startswith("lxc")) or name in ("cilium_host", "cilium_net"):
        return Cni.CILIUM, None, "a Cilium device"
    if name in ("cilium_vxlan", "cilium_geneve"):
        return Cni.CILIUM, Overlay.VXLAN if name == "cilium_vxlan" else Overlay.GENEVE, "Cilium's tunnel device"
    if name.startswith("flannel.") and i.kind is InterfaceKind.OVERLAY:
        return Cni.FLANNEL, Overlay.VXLAN, "flannel's VXLAN device"
    if name == "antrea-gw0":
        return Cni.ANTREA, None, "Antrea's gateway"
    if name == "antrea-tun0":
        return Cni.ANTREA, Overlay.GENEVE if i.overlay_port == GENEVE_PORT else (
            Overlay.VXLAN if i.overlay_port else None), f"Antrea's tunnel, UDP {i.overlay_port or '?'}"
    if veth and name.startswith("eni"):
        return Cni.AWS_VPC, None, "an AWS VPC CNI host veth"
    if name == "kube-bridge":
        return Cni.KUBE_ROUTER, None, "kube-router's bridge"
    if name.startswith("tun-") and i.kind is InterfaceKind.OVERLAY:
        return Cni.KUBE_ROUTER, Overlay.IPIP, "kube-router's IP-in-IP tunnel"
    if name == "vxlan-6784":
        return Cni.WEAVE, Overlay.VXLAN, "Weave's fast datapath VXLAN"
    if name == "weave" and i.kind is InterfaceKind.BRIDGE:
        return Cni.WEAVE, None, "Weave's bridge"
    return None


def _cni(api: CniKind, signs: list[_Sign], inventories: dict[str, Inventory]) -> CniKind:
    seen = {s.cni for s in signs}
    if {Cni.CALICO, Cni.FLANNEL} <= seen and Cni.CANAL not in seen:  # Calico's veths, flannel's tunnel
        signs = [replace(s, cni=Cni.CANAL) if s.cni in (Cni.CALICO, Cni.FLANNEL) else s for s in signs]
        seen = {s.cni for s in signs}
    if not signs:
        if api.name is Cni.UNKNOWN:
            return replace(api, evidence=(*api.evidence, *_no_sign(inventories)))
        return api
    name = api.name if api.name in seen else None
    if name is None and api.name is not Cni.UNKNOWN:
        return replace(api, confidence=Confidence.MEDIUM, evidence=(
            *api.evidence, f"but the nodes show {', '.join(sorted(c.value for c in seen))} devices:", *_lines(signs)))
    name = name or min(seen, key=lambda c: [s.cni for s in signs].index(c))
    mine = [s for s in signs if s.cni is name]
    tunnels = {s.overlay for s in mine if s.overlay is not None}
    untunnelled = Overlay.UNKNOWN if name is Cni.WEAVE else Overlay.ROUTED  # Weave's sleeve is no device
    overlay = next(iter(tunnels)) if len(tunnels) == 1 else (Overlay.UNKNOWN if tunnels else untunnelled)
    lines = _lines(mine) + (() if tunnels else (f"no {name.value} tunnel device on {', '.join(sorted(inventories))}",))
    if api.name is Cni.UNKNOWN:
        return CniKind(name, overlay, Confidence.MEDIUM, (*api.evidence, "decided from the nodes' devices:", *lines))
    if api.overlay in (Overlay.UNKNOWN, overlay):
        return CniKind(name, overlay, Confidence.HIGH, (*api.evidence, *lines))
    return CniKind(name, overlay, Confidence.MEDIUM, (
        *api.evidence, f"but the nodes' devices say {overlay.value}, not {api.overlay.value}:", *lines))


def _lines(signs: list[_Sign]) -> tuple[str, ...]:
    """At most SHOWN lines per kind of device, then how many more."""
    out: list[str] = []
    for what in dict.fromkeys(s.what for s in signs):
        group = [s.line for s in signs if s.what == what]
        out += group[:SHOWN] + ([f"… {len(group) - SHOWN} more ({what})"] if len(group) > SHOWN else [])
    return tuple(out)


def _no_sign(inventories: dict[str, Inventory]) -> tuple[str, ...]:
    """What an unknown CNI's nodes do have: their devices, names only."""
    return tuple(f"{node}: no device of a known CNI; devices: "
                 + ", ".join(i.name for i in inventory.interfaces if i.kind is not InterfaceKind.LOOPBACK)
                 for node, inventory in sorted(inventories.items()))


_IPVS_DEVICES = {"kube-ipvs0": ServiceProxy.KUBE_PROXY, "kube-dummy-if": ServiceProxy.KUBE_ROUTER}


def _proxy(api: ProxyKind, inventories: dict[str, Inventory]) -> ProxyKind:
    seen = [(node, i.name) for node, inventory in sorted(inventories.items()) for i in inventory.interfaces
            if i.name in _IPVS_DEVICES]
    if not seen:
        return api
    lines = tuple(f"{node}: {name} (holds the Service IPs: IPVS)" for node, name in seen[:SHOWN])
    owner = _IPVS_DEVICES[seen[0][1]]
    if api.mode is ProxyMode.IPVS:
        return replace(api, confidence=Confidence.HIGH, evidence=(*api.evidence, *lines))
    if api.name is ServiceProxy.UNKNOWN:
        return ProxyKind(owner, ProxyMode.IPVS, Confidence.MEDIUM, (*api.evidence, "decided from the nodes' devices:",
                                                                     *lines))
    return replace(api, confidence=Confidence.MEDIUM, evidence=(
        *api.evidence, "but the nodes show IPVS devices (left from an earlier mode?):", *lines))
