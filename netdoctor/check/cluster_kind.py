"""What the cluster is made of, from its API objects: the CNI, its overlay and the Service proxy.

`read(kube)` is called by check.resolve, which puts the answer in Facts.cluster; the judge refines it
from the devices the node captures list (netdoctor.judge.cluster_kind). It reads only the DaemonSets
of NAMESPACES and, by name, the ConfigMaps of the components found there; a read the user may not
do (403) makes the answer unknown and says so, it never stops the check. `decide` is pure: the unit
tests hand it crafted object sets, one per dialect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Mapping

import yaml

from netdoctor.cluster.kube import Forbidden, Kube, NotFound
from netdoctor.model import ClusterKind, Cni, CniKind, Confidence, Overlay, ProxyKind, ProxyMode, ServiceProxy

# Where CNIs and kube-proxy keep their DaemonSets: manifests and Helm charts use kube-system; flannel's
# own manifest kube-flannel, Calico's operator calico-system, some Cilium installs their own namespace.
NAMESPACES = ("kube-system", "kube-flannel", "calico-system", "cilium")
PROXY_NAMESPACE = "kube-system"


@dataclass(frozen=True)
class KubeSystem:
    """What detection read: the DaemonSets of NAMESPACES, the ConfigMaps asked for by "ns/name"
    (None: not found), and the reads the API refused ("daemonsets in kube-system", "ConfigMap
    kube-system/kube-proxy") with the server's words."""

    daemon_sets: tuple[Mapping, ...] = ()
    config_maps: Mapping[str, Mapping | None] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)

    def lines(self, *what: str) -> tuple[str, ...]:
        """"cannot read …" for each refused read (of `what`, or all)."""
        return tuple(f"cannot read {w}: {why}" for w, why in self.refused.items() if not what or w in what)


@dataclass(frozen=True)
class _Daemon:
    """The parts of a DaemonSet detection reads."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    images: tuple[str, ...]
    argv: tuple[str, ...]  # every container's command and args
    env: Mapping[str, str]  # every container's literal environment values
    config_maps: tuple[str, ...]  # the ConfigMaps its volumes mount
    scheduled: int | None  # status.desiredNumberScheduled

    @classmethod
    def from_api(cls, obj: Mapping) -> _Daemon:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or []
        return cls(
            namespace=meta.get("namespace", ""), name=meta.get("name", ""), labels=meta.get("labels") or {},
            images=tuple(c.get("image", "") for c in containers),
            argv=tuple(str(a) for c in containers for a in (c.get("command") or []) + (c.get("args") or [])),
            env={e["name"]: str(e["value"]) for c in containers for e in c.get("env") or []
                 if "name" in e and "value" in e},
            config_maps=tuple((v.get("configMap") or {}).get("name", "") for v in pod.get("volumes") or []
                              if v.get("configMap")),
            scheduled=(obj.get("status") or {}).get("desiredNumberScheduled"),
        )

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def line(self) -> str:
        image = f" (image {self.images[0]})" if self.images else ""
        return f"DaemonSet {self.ref}{image}"

    def flag(self, name: str) -> str | None:
        """A command-line flag's value: `--name=value`, `--name value`, or "true" for a bare `--name`."""
        for index, arg in enumerate(self.argv):
            if arg.startswith(f"--{name}="):
                return arg.split("=", 1)[1]
            if arg == f"--{name}":
                following = self.argv[index + 1] if index + 1 < len(self.argv) else ""
                return following if following and not following.startswith("-") else "true"
        return None

    def config_map(self, default: str) -> str:
        """The name of the ConfigMap it mounts that starts like `default` (a kustomize hash suffix)."""
        return next((n for n in self.config_maps if n.startswith(default)), default)


# --- reading --------------------------------------------------------------------------------------


def read(kube: Kube) -> ClusterKind:
    """List the DaemonSets of NAMESPACES, get the ConfigMaps of what was found, and decide."""
    daemon_sets, refused = [], {}
    for namespace in NAMESPACES:
        try:
            daemon_sets += kube.list_objects("DaemonSet", namespace)
        except (Forbidden, NotFound) as exc:
            refused[f"daemonsets in {namespace}"] = exc.server_message
    config_maps: dict[str, Mapping | None] = {}
    for namespace, name in config_maps_to_read(daemon_sets):
        try:
            config_maps[f"{namespace}/{name}"] = kube.get_object("ConfigMap", namespace, name)
        except NotFound:
            config_maps[f"{namespace}/{name}"] = None
        except Forbidden as exc:
            refused[f"ConfigMap {namespace}/{name}"] = exc.server_message
    return decide(KubeSystem(tuple(daemon_sets), config_maps, refused))


def config_maps_to_read(daemon_sets) -> tuple[tuple[str, str], ...]:
    """(namespace, name) of each ConfigMap `decide` consults for these DaemonSets."""
    wanted = []
    for daemon in map(_Daemon.from_api, daemon_sets):
        cni = _cni_of(daemon)
        if cni in _CONFIG:
            wanted.append((daemon.namespace, daemon.config_map(_CONFIG[cni])))
        elif _is_kube_proxy(daemon):
            wanted.append((daemon.namespace, daemon.config_map("kube-proxy")))
    return tuple(dict.fromkeys(wanted))


# --- deciding -------------------------------------------------------------------------------------


def decide(seen: KubeSystem) -> ClusterKind:
    """The CNI and the Service proxy these objects say the cluster runs; unknown says what was seen."""
    daemons = [_Daemon.from_api(o) for o in seen.daemon_sets]
    cnis = [(cni, d) for d in daemons for cni in (_cni_of(d),) if cni is not None]
    cni = _cni(cnis, daemons, seen)
    return ClusterKind(cni, _proxy(daemons, cnis, seen))


_SIGNS: tuple[tuple[Cni, tuple[str, ...], tuple[str, str]], ...] = (  # names, and a label their manifests set
    (Cni.CALICO, ("calico-node",), ("k8s-app", "calico-node")),
    (Cni.CANAL, ("canal",), ("k8s-app", "canal")),
    (Cni.CILIUM, ("cilium",), ("k8s-app", "cilium")),
    (Cni.FLANNEL, ("kube-flannel-ds", "kube-flannel"), ("app", "flannel")),
    (Cni.AWS_VPC, ("aws-node",), ("k8s-app", "aws-node")),
    (Cni.KUBE_ROUTER, ("kube-router",), ("k8s-app", "kube-router")),
    (Cni.ANTREA, ("antrea-agent",), ("component", "antrea-agent")),
    (Cni.WEAVE, ("weave-net",), ("name", "weave-net")),
)
_CONFIG = {Cni.CALICO: "calico-config", Cni.CANAL: "canal-config", Cni.CILIUM: "cilium-config",
           Cni.FLANNEL: "kube-flannel-cfg", Cni.ANTREA: "antrea-config"}


def _cni_of(daemon: _Daemon) -> Cni | None:
    for cni, names, (key, value) in _SIGNS:
        if daemon.name in names or daemon.labels.get(key) == value or (
                cni is Cni.FLANNEL and daemon.name.startswith("kube-flannel-ds-")):  # per-arch, older manifests
            return cni
    return None


def _is_kube_proxy(daemon: _Daemon) -> bool:
    return daemon.name == "kube-proxy" or daemon.labels.get("k8s-app") == "kube-proxy"


def _cni(found: list[tuple[Cni, _Daemon]], daemons: list[_Daemon], seen: KubeSystem) -> CniKind:
    if not found:
        listed = ", ".join(d.ref for d in daemons) or "none"
        return CniKind(Cni.UNKNOWN, Overlay.UNKNOWN, Confidence.LOW, (
            *seen.lines(*(f"daemonsets in {n}" for n in NAMESPACES)),
            f"no DaemonSet of a known CNI in {', '.join(NAMESPACES)} (DaemonSets seen: {listed})"))
    # On EKS, Calico or Cilium beside aws-node enforce policy (or chain); the VPC CNI moves the packets.
    cni, daemon = next(((c, d) for c, d in found if c is Cni.AWS_VPC), found[0])
    overlay, lines, confidence = _OVERLAY[cni](daemon, seen)
    others = [f"also running: {c.value} ({d.line}): policy only, chained, or a migration" for c, d in found
              if d is not daemon]
    return CniKind(cni, overlay, Confidence.MEDIUM if others else confidence, (daemon.line, *lines, *others))


_Decision = tuple[Overlay, tuple[str, ...], Confidence]


def _flannel(daemon: _Daemon, seen: KubeSystem) -> _Decision:
    name = daemon.config_map(_CONFIG[_cni_of(daemon)])
    text, line = _item(seen, daemon.namespace, name, "net-conf.json")
    if text is None:
        return Overlay.UNKNOWN, (line,), Confidence.MEDIUM
    try:
        backend = str(((json.loads(text) or {}).get("Backend") or {}).get("Type") or "")
    except (ValueError, AttributeError) as exc:
        return Overlay.UNKNOWN, (f"{line}: not JSON ({exc})",), Confidence.MEDIUM
    overlay = {"vxlan": Overlay.VXLAN, "host-gw": Overlay.ROUTED, "ipip": Overlay.IPIP}.get(backend.lower(),
                                                                                          Overlay.UNKNOWN)
    said = f"{line} Backend.Type: {backend or '(none)'}"
    return overlay, (said,), Confidence.HIGH if overlay is not Overlay.UNKNOWN else Confidence.MEDIUM


def _calico(daemon: _Daemon, seen: KubeSystem) -> _Decision:
    backend = daemon.env.get("CALICO_NETWORKING_BACKEND")  # set literally by the operator
    if backend is not None:
        lines = [f"{daemon.line} env CALICO_NETWORKING_BACKEND={backend}"]
    else:
        backend, line = _item(seen, daemon.namespace, daemon.config_map("calico-config"), "calico_backend")
        lines = [f"{line} calico_backend: {backend}" if backend is not None else line]
    pool = {mode: daemon.env.get(f"CALICO_IPV4POOL_{mode}") for mode in ("VXLAN", "IPIP")}
    lines += [f"{daemon.line} env CALICO_IPV4POOL_{mode}={value} (the default IPPool's, when it was created)"
              for mode, value in pool.items() if value is not None]
    encapsulated = ("Always", "CrossSubnet")
    if backend == "vxlan":
        return Overlay.VXLAN, tuple(lines), Confidence.HIGH
    if pool["VXLAN"] in encapsulated:
        return Overlay.VXLAN, tuple(lines), Confidence.MEDIUM
    if pool["IPIP"] in encapsulated:
        return Overlay.IPIP, tuple(lines), Confidence.MEDIUM
    if backend == "bird" and pool["VXLAN"] == pool["IPIP"] == "Never":
        return Overlay.ROUTED, tuple(lines), Confidence.MEDIUM
    if backend == "none":
        lines.append("calico_backend none: Calico enforces policy only, another plugin moves the packets")
    else:
        lines.append("the IPPools' ipipMode/vxlanMode say whether BGP routes are tunnelled (not read)")
    return Overlay.UNKNOWN, tuple(lines), Confidence.MEDIUM


def _cilium(daemon: _Daemon, seen: KubeSystem) -> _Decision:
    config, line = _config(seen, daemon.namespace, daemon.config_map("cilium-config"))
    if config is None:
        return Overlay.UNKNOWN, (line,), Confidence.MEDIUM
    routing, legacy = config.get("routing-mode"), config.get("tunnel")  # `tunnel` was removed in 1.15
    protocol = config.get("tunnel-protocol") or (legacy if legacy in ("vxlan", "geneve") else None) or "vxlan"
    said = ", ".join(f"{k}: {config[k]}" for k in ("routing-mode", "tunnel-protocol", "tunnel") if k in config)
    said = f"{line} {said or 'routing-mode and tunnel-protocol unset (defaults: tunnel, vxlan)'}"
    if routing == "native" or (routing is None and legacy == "disabled"):
        return Overlay.ROUTED, (said,), Confidence.HIGH
    return (Overlay.GENEVE if protocol == "geneve" else Overlay.VXLAN), (said,), Confidence.HIGH


def _antrea(daemon: _Daemon, seen: KubeSystem) -> _Decision:
    text, line = _item(seen, daemon.namespace, daemon.config_map("antrea-config"), "antrea-agent.conf")
    if text is None:
        return Overlay.UNKNOWN, (line,), Confidence.MEDIUM
    try:
        conf = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        return Overlay.UNKNOWN, (f"{line}: not YAML ({' '.join(str(exc).split())})",), Confidence.MEDIUM
    mode, tunnel = str(conf.get("trafficEncapMode") or "encap"), str(conf.get("tunnelType") or "geneve")
    said = (f"{line} trafficEncapMode: {conf.get('trafficEncapMode') or '(unset: encap)'}, "
            f"tunnelType: {conf.get('tunnelType') or '(unset: geneve)'}")
    if mode == "noEncap":
        return Overlay.ROUTED, (said,), Confidence.HIGH
    if mode == "networkPolicyOnly":
        return Overlay.UNKNOWN, (said, "Antrea enforces policy only, another plugin moves the packets"), Confidence.MEDIUM
    overlay = {"geneve": Overlay.GENEVE, "vxlan": Overlay.VXLAN}.get(tunnel, Overlay.UNKNOWN)
    return overlay, (said,), Confidence.HIGH if overlay is not Overlay.UNKNOWN else Confidence.MEDIUM


def _kube_router(daemon: _Daemon, _seen: KubeSystem) -> _Decision:
    enabled, kind = daemon.flag("enable-overlay") or "true", daemon.flag("overlay-type") or "subnet"
    said = f"{daemon.line} args --enable-overlay={enabled} --overlay-type={kind}"
    if enabled == "false":
        return Overlay.ROUTED, (said,), Confidence.HIGH
    if kind == "full":
        return Overlay.IPIP, (said,), Confidence.HIGH
    return Overlay.UNKNOWN, (said, "IP-in-IP only between nodes of different subnets, plain routes within one "
                             "(the nodes' tun-… devices tell)"), Confidence.MEDIUM


def _aws(daemon: _Daemon, _seen: KubeSystem) -> _Decision:
    return Overlay.ROUTED, ("the VPC routes pod IPs: no overlay",), Confidence.HIGH


def _weave(daemon: _Daemon, _seen: KubeSystem) -> _Decision:
    return Overlay.UNKNOWN, ("Weave tunnels per peer: fast datapath (VXLAN) or sleeve (UDP); the nodes' "
                             "vxlan-6784 device tells",), Confidence.MEDIUM


_OVERLAY: dict[Cni, Callable[[_Daemon, KubeSystem], _Decision]] = {
    Cni.FLANNEL: _flannel, Cni.CANAL: _flannel, Cni.CALICO: _calico, Cni.CILIUM: _cilium, Cni.ANTREA: _antrea,
    Cni.KUBE_ROUTER: _kube_router, Cni.AWS_VPC: _aws, Cni.WEAVE: _weave,
}


def _config(seen: KubeSystem, namespace: str, name: str) -> tuple[Mapping | None, str]:
    """A ConfigMap's data and the line naming it, or None and the line saying why there is none."""
    key = f"{namespace}/{name}"
    if key not in seen.config_maps:
        return None, next(iter(seen.lines(f"ConfigMap {key}")), f"ConfigMap {key} not read")
    obj = seen.config_maps[key]
    if obj is None:
        return None, f"ConfigMap {key} not found"
    return obj.get("data") or {}, f"ConfigMap {key}"


def _item(seen: KubeSystem, namespace: str, name: str, item: str) -> tuple[str | None, str]:
    config, line = _config(seen, namespace, name)
    if config is None:
        return None, line
    if item not in config:
        return None, f"{line} has no {item}"
    return str(config[item]), line


# --- the Service proxy ----------------------------------------------------------------------------


def _proxy(daemons: list[_Daemon], cnis: list[tuple[Cni, _Daemon]], seen: KubeSystem) -> ProxyKind:
    running = [d for d in daemons if _is_kube_proxy(d) and d.scheduled != 0]
    idle = [f"{d.line} schedules no pod" for d in daemons if _is_kube_proxy(d) and d.scheduled == 0]
    replacement = _replacement(cnis, seen)
    if running:
        kube_proxy = _kube_proxy(running[0], seen)
        if replacement is None:
            return kube_proxy
        name, mode, lines = replacement
        return ProxyKind(name, mode, Confidence.MEDIUM, (*lines, f"{running[0].line} runs too: its rules are "
                                                         "there, but the replacement translates first"))
    refused = seen.lines(f"daemonsets in {PROXY_NAMESPACE}")
    absent = idle or ([] if refused else [f"no kube-proxy DaemonSet in {PROXY_NAMESPACE}"])
    if replacement is not None:
        name, mode, lines = replacement
        return ProxyKind(name, mode, Confidence.MEDIUM if refused else Confidence.HIGH, (*absent, *refused, *lines))
    outside = ["kube-proxy may also run outside the API's view (static pods, a node service, k3s)"] if absent else []
    return ProxyKind(ServiceProxy.UNKNOWN, ProxyMode.UNKNOWN, Confidence.LOW, (*absent, *refused, *outside))


def _replacement(cnis: list[tuple[Cni, _Daemon]], seen: KubeSystem) -> tuple[ServiceProxy, ProxyMode, tuple[str, ...]] | None:
    """A CNI that translates Service IPs itself: Cilium's kube-proxy replacement, Calico's eBPF
    data plane, kube-router's IPVS service proxy."""
    for cni, daemon in cnis:
        if cni is Cni.CILIUM:
            config, line = _config(seen, daemon.namespace, daemon.config_map("cilium-config"))
            value = str((config or {}).get("kube-proxy-replacement", "false"))
            if value in ("true", "strict"):
                return ServiceProxy.CILIUM, ProxyMode.EBPF, (f"{line} kube-proxy-replacement: {value}",)
        if cni is Cni.CALICO and daemon.env.get("FELIX_BPFENABLED", "").lower() == "true":
            return ServiceProxy.CALICO, ProxyMode.EBPF, (f"{daemon.line} env FELIX_BPFENABLED=true",)
        if cni is Cni.KUBE_ROUTER and (daemon.flag("run-service-proxy") or "true") == "true":
            return ServiceProxy.KUBE_ROUTER, ProxyMode.IPVS, (
                f"{daemon.line} args --run-service-proxy={daemon.flag('run-service-proxy') or '(unset: true)'}",)
    return None


_MODES = {"iptables": ProxyMode.IPTABLES, "": ProxyMode.IPTABLES, "nftables": ProxyMode.NFTABLES,
          "ipvs": ProxyMode.IPVS}


def _kube_proxy(daemon: _Daemon, seen: KubeSystem) -> ProxyKind:
    """Its mode: the --proxy-mode flag, else its configuration file's `mode:` ("" is iptables)."""
    flag = daemon.flag("proxy-mode")
    if flag is not None:
        return ProxyKind(ServiceProxy.KUBE_PROXY, _MODES.get(flag, ProxyMode.UNKNOWN), Confidence.HIGH,
                         (daemon.line, f"{daemon.line} args --proxy-mode={flag}"))
    config, line = _config(seen, daemon.namespace, daemon.config_map("kube-proxy"))
    text = (config or {}).get("config.conf") or next(
        (str(v) for v in (config or {}).values() if "KubeProxyConfiguration" in str(v)), None)
    if text is None:
        said = f"{line} has no config.conf" if config is not None else line
        return ProxyKind(ServiceProxy.KUBE_PROXY, ProxyMode.IPTABLES, Confidence.MEDIUM,
                         (daemon.line, said, "no --proxy-mode either: kube-proxy's default, iptables"))
    try:
        mode = str((yaml.safe_load(text) or {}).get("mode") or "")
    except (yaml.YAMLError, AttributeError) as exc:
        return ProxyKind(ServiceProxy.KUBE_PROXY, ProxyMode.UNKNOWN, Confidence.MEDIUM,
                         (daemon.line, f"{line} config.conf is not YAML ({' '.join(str(exc).split())})"))
    shown = f'mode: "{mode}" (iptables, the default)' if not mode else f"mode: {mode}"
    found = _MODES.get(mode, ProxyMode.UNKNOWN)
    return ProxyKind(ServiceProxy.KUBE_PROXY, found, Confidence.HIGH if found is not ProxyMode.UNKNOWN
                     else Confidence.MEDIUM, (daemon.line, f"{line} config.conf {shown}"))
