"""The cluster objects the rest of netdoctor sees: small frozen dataclasses, not API models.

`netdoctor.cluster.kube.Kube` builds them from API-shaped dicts (the JSON the server sends) with the
`from_api` constructors here; resolve/plan/judge read them, tests and fakes build them directly.
NetworkPolicies stay API dicts for `netdoctor.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping

from netdoctor.labels import Selector, from_label_selector


def _labels(meta: Mapping) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((meta.get("labels") or {}).items()))


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_api(cls, obj: Mapping) -> Namespace:
        meta = obj.get("metadata") or {}
        return cls(meta.get("name", ""), _labels(meta))


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class Node:
    name: str
    internal_ip: str | None
    ready: bool
    taints: tuple[Taint, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    unschedulable: bool = False
    kernel: str = ""  # status.nodeInfo.kernelVersion
    runtime: str = ""  # status.nodeInfo.containerRuntimeVersion, e.g. containerd://2.1.4

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @classmethod
    def from_api(cls, obj: Mapping) -> Node:
        status, spec = obj.get("status") or {}, obj.get("spec") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        taints = tuple(
            Taint(t.get("key", ""), t.get("value") or "", t.get("effect", ""))
            for t in spec.get("taints") or []
        )
        info = status.get("nodeInfo") or {}
        return cls(
            name=(obj.get("metadata") or {}).get("name", ""),
            internal_ip=addresses.get("InternalIP"),
            ready=_condition_true(status, "Ready"),
            taints=taints,
            labels=_labels(obj.get("metadata") or {}),
            unschedulable=bool(spec.get("unschedulable")),
            kernel=info.get("kernelVersion") or "",
            runtime=info.get("containerRuntimeVersion") or "",
        )


@dataclass(frozen=True)
class ContainerPort:
    name: str | None
    port: int
    protocol: str = "TCP"
    container: str | None = None  # the container that declares it (None for an EndpointSlice's port)


class ContainerStateKind(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    TERMINATED = "terminated"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ContainerState:
    """One container's current state, as kubelet reports it (reason e.g. ImagePullBackOff)."""

    name: str
    kind: ContainerStateKind
    ready: bool
    image: str = ""
    reason: str = ""
    message: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class PodCondition:
    type: str
    status: str  # "True" / "False" / "Unknown"
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class ReadinessProbe:
    """A summary of a container's readinessProbe: which kind, and what it checks."""

    container: str
    kind: str  # "httpGet" / "tcpSocket" / "exec" / "grpc"
    port: int | str | None = None
    path: str | None = None
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    labels: tuple[tuple[str, str], ...]
    node_name: str | None
    ip: str | None
    host_ip: str | None
    phase: str
    ready: bool
    host_network: bool = False
    container_ports: tuple[ContainerPort, ...] = ()
    owner_kind: str | None = None  # the controller ownerReference
    owner_name: str | None = None
    containers: tuple[str, ...] = ()
    readiness_probes: tuple[ReadinessProbe, ...] = ()
    container_states: tuple[ContainerState, ...] = ()
    conditions: tuple[PodCondition, ...] = ()
    deleting: bool = False  # metadata.deletionTimestamp is set

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def condition(self, type_: str) -> PodCondition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @classmethod
    def from_api(cls, obj: Mapping) -> Pod:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), {})
        containers = spec.get("containers") or []
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            labels=_labels(meta),
            node_name=spec.get("nodeName"),
            ip=status.get("podIP"),
            host_ip=status.get("hostIP"),
            phase=status.get("phase", "Unknown"),
            ready=_condition_true(status, "Ready"),
            host_network=bool(spec.get("hostNetwork")),
            container_ports=tuple(
                ContainerPort(p.get("name"), int(p["containerPort"]), p.get("protocol") or "TCP", c.get("name"))
                for c in containers
                for p in c.get("ports") or []
            ),
            owner_kind=owner.get("kind"),
            owner_name=owner.get("name"),
            containers=tuple(c.get("name", "") for c in containers),
            readiness_probes=tuple(
                _readiness(c["name"], c["readinessProbe"]) for c in containers if c.get("readinessProbe")
            ),
            container_states=tuple(_container_state(s) for s in status.get("containerStatuses") or []),
            conditions=tuple(
                PodCondition(c.get("type", ""), c.get("status", ""), c.get("reason") or "", c.get("message") or "")
                for c in status.get("conditions") or []
            ),
            deleting=bool(meta.get("deletionTimestamp")),
        )


def _condition_true(status: Mapping, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or [])


def _readiness(container: str, probe: Mapping) -> ReadinessProbe:
    for kind in ("httpGet", "tcpSocket", "grpc"):
        if kind in probe:
            return ReadinessProbe(container, kind, port=probe[kind].get("port"), path=probe[kind].get("path"))
    if "exec" in probe:
        return ReadinessProbe(container, "exec", command=tuple((probe["exec"] or {}).get("command") or ()))
    return ReadinessProbe(container, "unknown")


def _container_state(status: Mapping) -> ContainerState:
    state = status.get("state") or {}
    kind = next((k for k in ContainerStateKind if k.value in state), ContainerStateKind.UNKNOWN)
    detail = state.get(kind.value) or {}
    return ContainerState(
        name=status.get("name", ""),
        kind=kind,
        ready=bool(status.get("ready")),
        image=status.get("image", ""),
        reason=detail.get("reason") or "",
        message=detail.get("message") or "",
        exit_code=detail.get("exitCode"),
    )


@dataclass(frozen=True)
class ServicePort:
    name: str | None
    protocol: str
    port: int
    target_port: int | str
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    type: str
    cluster_ip: str | None  # None for headless ("None") and ExternalName
    headless: bool
    ports: tuple[ServicePort, ...]
    selector: tuple[tuple[str, str], ...]  # empty: no selector (manually managed endpoints)
    publish_not_ready_addresses: bool = False
    external_name: str | None = None
    internal_traffic_policy: str = "Cluster"  # "Local": a node without a local endpoint drops the ClusterIP
    external_traffic_policy: str = "Cluster"  # "Local": a NodePort answers outsiders only where an endpoint is
    session_affinity: str = "None"  # "ClientIP": one client, one backend
    load_balancer_ips: tuple[str, ...] = ()  # status.loadBalancer.ingress: empty while no load balancer serves it

    @property
    def selector_map(self) -> dict[str, str]:
        return dict(self.selector)

    @classmethod
    def from_api(cls, obj: Mapping) -> Service:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            type=spec.get("type") or "ClusterIP",
            cluster_ip=None if cluster_ip in (None, "", "None") else cluster_ip,
            headless=cluster_ip == "None",
            ports=tuple(
                ServicePort(
                    name=p.get("name"),
                    protocol=p.get("protocol") or "TCP",
                    port=int(p["port"]),
                    target_port=p.get("targetPort") if p.get("targetPort") is not None else int(p["port"]),
                    node_port=p.get("nodePort"),
                )
                for p in spec.get("ports") or []
            ),
            selector=tuple(sorted((spec.get("selector") or {}).items())),
            publish_not_ready_addresses=bool(spec.get("publishNotReadyAddresses")),
            external_name=spec.get("externalName"),
            internal_traffic_policy=spec.get("internalTrafficPolicy") or "Cluster",
            external_traffic_policy=spec.get("externalTrafficPolicy") or "Cluster",
            session_affinity=spec.get("sessionAffinity") or "None",
            load_balancer_ips=tuple(i.get("ip") or i.get("hostname") or "" for i in
                                    ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []),
        )


@dataclass(frozen=True)
class EndpointAddress:
    ip: str
    ready: bool
    serving: bool
    terminating: bool
    pod_name: str | None  # targetRef name when it is a Pod
    node_name: str | None


@dataclass(frozen=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str | None  # the kubernetes.io/service-name label
    address_type: str  # IPv4 / IPv6 / FQDN
    ports: tuple[ContainerPort, ...]  # name, port, protocol of each slice port
    endpoints: tuple[EndpointAddress, ...]

    @classmethod
    def from_api(cls, obj: Mapping) -> EndpointSlice:
        meta = obj.get("metadata") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            service=(meta.get("labels") or {}).get("kubernetes.io/service-name"),
            address_type=obj.get("addressType", ""),
            ports=tuple(
                ContainerPort(p.get("name") or None, int(p["port"]), p.get("protocol") or "TCP")
                for p in obj.get("ports") or []
                if p.get("port") is not None
            ),
            endpoints=tuple(_endpoint(e, ip) for e in obj.get("endpoints") or [] for ip in e.get("addresses") or []),
        )


def _endpoint(endpoint: Mapping, ip: str) -> EndpointAddress:
    conditions = endpoint.get("conditions") or {}
    ref = endpoint.get("targetRef") or {}
    ready = conditions.get("ready") is not False  # nil means ready (API convention)
    return EndpointAddress(
        ip=ip,
        ready=ready,
        serving=conditions.get("serving", ready) is not False,
        terminating=bool(conditions.get("terminating")),
        pod_name=ref.get("name") if ref.get("kind") == "Pod" else None,
        node_name=endpoint.get("nodeName"),
    )


@dataclass(frozen=True)
class Deployment:
    namespace: str
    name: str
    selector: Selector
    template_labels: tuple[tuple[str, str], ...]
    replicas: int

    @classmethod
    def from_api(cls, obj: Mapping) -> Deployment:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        template_meta = (spec.get("template") or {}).get("metadata") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            selector=from_label_selector(spec.get("selector") or {}),
            template_labels=_labels(template_meta),
            replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        )
