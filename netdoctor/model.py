"""The check pipeline's vocabulary: states, layers, plan steps, observations, results, the Report.

Shared by every stage of `netdoctor check` (target → resolve → plan → runner → judge → report).
Everything here is a frozen dataclass or an enum; stages hand these to one another. Cluster
objects (netdoctor.cluster.objects) and probe results (netdoctor.observations) are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Mapping, Union

from netdoctor.cluster.objects import EndpointSlice, Node, Pod, Service, ServicePort
from netdoctor.observations import (
    DnsResult, Inventory, ListenerTable, NatEntry, Packet, PingResult, Refusal, ResolvConf, TcpResult,
)

if TYPE_CHECKING:  # the engine is imported by plan only when policies are evaluated
    from netdoctor.policy.engine import FlowVerdict


class State(Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"

    @property
    def rank(self) -> int:
        """How bad: a layer takes the worst state of its checks (SKIP only when all skipped)."""
        return {State.SKIP: 0, State.PASS: 1, State.WARN: 2, State.ERROR: 3, State.FAIL: 4}[self]


class Layer(Enum):
    TARGET = "target"
    DNS = "dns"
    ENDPOINTS = "endpoints"
    POD = "pod"
    SERVICE = "service"
    NODE = "node"
    POLICY = "policy"


class Kind(Enum):
    SERVICE = "svc"
    POD = "pod"
    DEPLOYMENT = "deploy"


@dataclass(frozen=True)
class Ref:
    """A parsed TARGET or SOURCE argument: `svc/web`, `pod/client`, `deploy/api`."""

    kind: Kind
    name: str
    namespace: str | None = None  # a --from in another namespace (`ops/deploy/toolbox`); None: the check's

    def __str__(self) -> str:
        return f"{self.kind.value}/{self.name}"


# --- the plan: probes to create and steps to run, each with its declared expectation ---------


class CaptureMode(Enum):
    """--capture: `auto` captures where the cluster admits it and says which hops are blind;
    `strict` fails (exit 4) instead; `off` runs no capture."""

    AUTO = "auto"
    STRICT = "strict"
    OFF = "off"


class ProbePurpose(Enum):
    TRAFFIC = "traffic"  # sends the check's traffic (and captures its own eth0 when capturing)
    NODE_CAPTURE = "node-capture"  # hostNetwork: captures every interface of its node


@dataclass(frozen=True)
class PlannedProbe:
    """A probe pod the plan asks for. `copy_labels` impersonates `impersonates` (never Ready)."""

    role: str
    node: str | None
    namespace: str
    copy_labels: tuple[tuple[str, str], ...] = ()
    impersonates: str | None = None
    purpose: ProbePurpose = ProbePurpose.TRAFFIC
    capture: bool = False  # capture packets in this probe (needs NET_RAW)


class Expect(Enum):
    """What a step should see if the cluster is healthy and the policies are enforced."""

    SUCCEED = "succeed"
    BLOCKED = "blocked"  # the NetworkPolicies deny this flow
    DROPPED = "dropped"  # internalTrafficPolicy Local: the probe's node has no local endpoint, its rules drop it


@dataclass(frozen=True)
class TcpConnect:
    ip: str
    port: int
    attempts: int = 1
    # Attempts of one more round, run by the runner when the captures show a ready backend no
    # connection reached yet, or cannot tell the backends apart (the Service IP's coverage).
    until_covered: int = 0
    spacing: float = 0.0  # seconds between the attempts' starts; 0: all at once


@dataclass(frozen=True)
class UdpExchange(TcpConnect):
    """What a connect is for UDP: a datagram to ip:port, and the wait for one back. `dns_name`: the
    port serves DNS, the datagram is a query for it (any DNS response is an answer); else a short
    text. An answer counts as connected, an ICMP port unreachable as refused, silence as NO_REPLY
    (open|filtered: a UDP service need not answer)."""

    dns_name: str | None = None


@dataclass(frozen=True)
class DnsQuery:
    """`server` None: the probe's first resolv.conf nameserver; `search`: walk the search path."""

    server: str | None
    name: str
    rdtype: str = "A"
    attempts: int = 1
    search: bool = False


@dataclass(frozen=True)
class ReadResolvConf:
    """The probe's /etc/resolv.conf, or (pod set) the source pod's own, read by exec."""

    pod: str | None = None


@dataclass(frozen=True)
class Ping:
    """`ip` of a backend, or `to_probe`: the role of another probe, whose IP the runner knows."""

    ip: str | None
    size: int
    dont_fragment: bool = False
    to_probe: str | None = None


@dataclass(frozen=True)
class InspectListeners:
    """Read the backend pod's own socket table (exec in the backend, no probe): /proc/net/tcp or
    udp, by `cat` in the first of `containers` that has it (the one declaring the port first)."""

    pod: str
    port: int
    protocol: str = "TCP"
    containers: tuple[str, ...] = ()


Action = Union[TcpConnect, UdpExchange, DnsQuery, ReadResolvConf, Ping, InspectListeners]


@dataclass(frozen=True)
class Step:
    key: str  # unique in a plan, e.g. "pod:client->web-1:8080"
    check_id: str
    layer: Layer
    probe: str | None  # a PlannedProbe.role, None for InspectListeners
    action: Action
    expect: Expect = Expect.SUCCEED
    title: str = ""  # one line for --plan and progress, e.g. "client → 10.244.1.5:8080"


class NodeReason(Enum):
    """Why the plan put a probe on a node (`Plan.sample`)."""

    SOURCE = "source"  # the source's node
    BACKEND = "backend"  # hosts a backend (detail: which)
    DNS = "dns"  # hosts a DNS pod (detail: which)
    GROUP = "group"  # the first of its kind (detail: zone, pool, kernel, runtime)
    REQUESTED = "requested"  # named by --nodes
    ALL = "all"  # --nodes all


@dataclass(frozen=True)
class Why:
    reason: NodeReason
    detail: str = ""


@dataclass(frozen=True)
class SampledNode:
    """A node of the plan's sample and why it was chosen; `excluded` says why no probe runs there
    although the question involves it (NotReady, cordoned, a taint the probes do not tolerate)."""

    name: str
    why: tuple[Why, ...]
    excluded: str | None = None


# Labels that tell nodes apart for the sample: one node per distinct (zone, pool, kernel, runtime).
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
POOL_LABELS = ("cloud.google.com/gke-nodepool", "eks.amazonaws.com/nodegroup", "karpenter.sh/nodepool",
               "kubernetes.azure.com/agentpool", "node.kubernetes.io/instance-type")
# virtual-kubelet's nodes (ACI, Fargate-style providers) carry this label and a
# virtual-kubelet.io/provider taint: no kernel of their own, a probe there sees no data plane.
NOT_VIRTUAL_SELECTOR = "type!=virtual-kubelet"


def node_group(node: Node) -> tuple[str, str, str, str]:
    """(zone, pool or instance type, kernel, container runtime): nodes alike in all four share
    their data plane's behaviour, one of them stands for the others."""
    labels = node.label_map
    zone = next((labels[k] for k in ZONE_LABELS if labels.get(k)), "")
    pool = next((labels[k] for k in POOL_LABELS if labels.get(k)), "")
    return zone, pool, node.kernel, node.runtime


def group_text(node: Node) -> str:
    zone, pool, kernel, runtime = node_group(node)
    parts = [f"zone {zone}" if zone else "", f"pool {pool}" if pool else "", f"kernel {kernel}" if kernel else "",
             runtime]
    return ", ".join(p for p in parts if p) or "no zone, pool, kernel or runtime reported"


def probe_excluded(node: Node) -> str | None:
    """Why a probe cannot run on `node` (None: it can). Probes tolerate no taint: a NoSchedule or
    NoExecute one keeps them off (virtual-kubelet.io/provider on virtual nodes, control planes)."""
    if not node.ready:
        return "NotReady"
    if node.unschedulable:
        return "cordoned (unschedulable)"
    taint = next((t for t in node.taints if t.effect in ("NoSchedule", "NoExecute")), None)
    if taint is not None:
        return f"taint {taint.key}{'=' + taint.value if taint.value else ''}:{taint.effect}"
    return None


@dataclass(frozen=True)
class Plan:
    probes: tuple[PlannedProbe, ...]
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()  # decisions worth telling the user (impersonation, sampling)
    capture: CaptureMode = CaptureMode.OFF
    sample: tuple[SampledNode, ...] = ()  # the nodes probed, and those involved but excluded

    def step(self, key: str) -> Step:
        return next(s for s in self.steps if s.key == key)


# --- observations and facts: what the runner saw, what resolve and plan learned -------------


ProbeResult = Union[tuple[TcpResult, ...], tuple[DnsResult, ...], ResolvConf, PingResult, ListenerTable]


@dataclass(frozen=True)
class Observation:
    """One executed step: the probe's results, or the error that stopped it, and its buffered log."""

    step_key: str
    result: ProbeResult | None
    error: str | None = None
    log: tuple[str, ...] = ()
    seconds: float = 0.0  # wall time the step took (its rounds added up)
    from_round: int = 0  # its results and connections are the rounds' from this one on (a look again's)
    set_aside: str | None = None  # why the earlier rounds' were set aside


@dataclass(frozen=True)
class RunningProbe:
    """A traffic probe as it ran: where the check's packets came from."""

    role: str
    pod: str
    ip: str | None
    node: str | None


@dataclass(frozen=True)
class Capture:
    """What one capture point saw while the steps ran: a node (a hostNetwork probe seeing every
    interface) or a traffic probe (its own eth0). `blind` says why nothing could be seen there."""

    point: str  # "node-1", or "probe source"
    node: str | None
    probe: str | None = None  # the traffic probe's role for a pod capture; None for a node
    packets: tuple[Packet, ...] = ()
    inventory: Inventory | None = None
    nat: tuple[NatEntry, ...] = ()  # the host's tracked connections from the probes (nodes only)
    blind: str | None = None
    pcap: bytes = field(default=b"", repr=False, compare=False)  # as captured, for --pcap
    rounds: tuple[int, ...] = ()  # where each round's packets start in `packets`; () for one round
    clock_offset: float = 0.0  # seconds this node's clock ran ahead of `clock_reference`'s: taken off its times
    clock_reference: str | None = None  # the node whose clock the times are on, when they were shifted

    def packets_since(self, first_round: int) -> tuple[Packet, ...]:
        """The packets of round `first_round` and after (a step looked at again sees only its own)."""
        if first_round == 0:
            return self.packets
        return self.packets[self.rounds[first_round]:] if first_round < len(self.rounds) else ()

    @cached_property
    def by_endpoint(self) -> Mapping[tuple[str, int], tuple[Packet, ...]]:
        """The packets from or to each endpoint (address and port, or ICMP echo id), and each ICMP
        error under the endpoint it quotes the packet of, in capture order: the judge looks up
        every hop of every connection by its source's endpoint."""
        found: dict[tuple[str, int], list[Packet]] = {}
        for p in self.packets:
            keys = {(p.src, p.sport), (p.dst, p.dport), (p.src, p.icmp_id), (p.dst, p.icmp_id)}
            if p.quoted is not None:
                keys |= {(p.dst, p.quoted.sport), (p.dst, p.quoted.icmp_id)}
            for key in keys:
                if key[1] is not None:
                    found.setdefault(key, []).append(p)
        return {key: tuple(packets) for key, packets in found.items()}


@dataclass(frozen=True)
class NearMiss:
    """A pod the Service selector almost matches, and what it has for the missed keys."""

    pod: str
    has: str  # e.g. "app=api-v2"


@dataclass(frozen=True)
class PortProblem:
    """A port mismatch found in the API objects (named targetPort unresolved, protocol differs)."""

    cause: str  # a cause key of ND-EP-003
    detail: str


@dataclass(frozen=True)
class PolicyFlow:
    """The policy engine's verdict for the source → one backend, decided at plan time."""

    backend: str
    verdict: FlowVerdict
    icmp: bool = True  # whether the policies let ping through (only port-less rules admit ICMP)


@dataclass(frozen=True)
class Unread:
    """API objects resolve could not read (RBAC: a read-only user without rights in kube-system, on
    nodes, …): what, the server's reason, and the layer and checks it costs. The run goes on."""

    what: str  # "pods in namespace kube-system"
    why: str  # the server's message
    layer: Layer
    costs: str  # "DNS backends are not asked one by one (ND-DNS-005)"

    def __str__(self) -> str:
        return f"cannot read {self.what} ({self.why}): {self.costs}"


@dataclass(frozen=True)
class SourceDns:
    """The --from pod's DNS as its spec sets it (dnsPolicy, dnsConfig), for when its own
    /etc/resolv.conf cannot be read (no `cat` in a distroless image, no exec right)."""

    derived: ResolvConf | None  # what the kubelet writes; None when the node's own resolv.conf decides
    basis: str  # "dnsPolicy None and dnsConfig", or why nothing can be derived


@dataclass(frozen=True)
class Facts:
    """What resolve and plan learned from the API: the judge's view of the cluster."""

    namespace: str
    target: Ref
    source: str  # who the client is, for humans: "probe on node-2 as pod/client"
    source_node: str | None
    source_pod: str | None  # the pod named by --from, None for a plain probe
    source_namespace: str  # where the source probes run
    port: int | None  # the port the client uses (the Service port, or the pod port)
    target_port: int | None  # the port on the backend pods, resolved
    source_labels: tuple[tuple[str, str], ...] = ()  # copied onto the probes (impersonation)
    impersonates: str | None = None  # "pod/NAME" whose labels the probes carry
    service: Service | None = None
    service_port: ServicePort | None = None
    backends: tuple[Pod, ...] = ()
    selector_misses: tuple[NearMiss, ...] = ()
    slices: tuple[EndpointSlice, ...] | None = None  # None: no Service, nothing to read
    port_problems: tuple[PortProblem, ...] = ()
    nodes: tuple[Node, ...] = ()
    dns_service: Service | None = None
    dns_backends: tuple[Pod, ...] = ()
    backend_ports: tuple[tuple[str, int], ...] = ()  # (pod, its targetPort): a named port may differ per pod
    cluster_domain: str = "cluster.local"
    policy: tuple[PolicyFlow, ...] | None = None  # None: not evaluated, see policy_error
    probe_icmp: bool = True  # whether the policies let ping through between two source probes
    dns_policy: tuple[PolicyFlow, ...] | None = None  # source → each DNS pod on UDP 53
    policy_error: str | None = None
    unread: tuple[Unread, ...] = ()  # what the user may not read, and what it costs
    source_dns: SourceDns | None = None  # the --from pod's DNS settings from its spec
    cluster: ClusterKind | None = None  # what the cluster is made of (check.cluster_kind); None: not read


@dataclass(frozen=True)
class Evidence:
    facts: Facts
    plan: Plan
    observations: tuple[Observation, ...]
    captures: tuple[Capture, ...] = ()
    probes: Mapping[str, RunningProbe] = field(default_factory=dict)  # the traffic probes, by role

    def observed(self, key: str) -> Observation | None:
        return next((o for o in self.observations if o.step_key == key), None)

    def runs(self, check_id: str) -> tuple[tuple[Step, Observation | None], ...]:
        """The planned steps of a check, each with its observation (None: never ran)."""
        return tuple((s, self.observed(s.key)) for s in self.plan.steps if s.check_id == check_id)

    def node_of(self, role: str | None) -> str | None:
        return next((p.node for p in self.plan.probes if p.role == role), None)


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    check_id: str
    state: State
    cause: str | None = None  # a cause key of this check in checks.yaml
    message: str = ""  # one line: what was found
    evidence: tuple[str, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)  # fills the catalog's templates
    log: tuple[str, ...] = ()
    title: str = ""  # from the catalog, filled by the judge
    explained_by: str | None = None  # "ND-POL-001:ingress-denied": this failure is that root cause's consequence
    duration_s: float = 0.0  # wall time of its steps (0 for a check judged from the API objects alone)


@dataclass(frozen=True)
class LayerResult:
    layer: Layer
    title: str
    state: State
    checks: tuple[CheckResult, ...]
    reason: str = ""  # why the layer was skipped

    @property
    def explained_by(self) -> str | None:
        """The root cause every failure of this layer is a consequence of, if there is one."""
        causes = {c.explained_by for c in self.checks if c.state in (State.FAIL, State.WARN, State.ERROR)}
        return next(iter(causes)) if len(causes) == 1 else None


class HopKind(Enum):
    POD = "pod"  # inside the pod: its eth0
    VETH = "veth"  # the pod's host-side interface on its node
    BRIDGE = "bridge"
    OVERLAY = "overlay"  # the tunnel device (VXLAN, Geneve)
    UNDERLAY = "underlay"  # the node's own interface between nodes


class Reply(Enum):
    """What came back through a hop."""

    ANSWER = "answer"  # SYN-ACK, DNS response, echo reply
    RST = "rst"
    ICMP = "icmp"  # an ICMP error (unreachable, fragmentation needed)


@dataclass(frozen=True)
class Hop:
    node: str | None
    interface: str
    kind: HopKind
    request: bool = False  # the request was seen here
    reply: Reply | None = None
    note: str = ""  # what changed here: "DNAT 10.96.0.20:80 → 10.244.2.5:8080", "VXLAN 172.30.0.1 → 172.30.0.2"
    blind: str | None = None  # why this hop could not be observed
    pod: str | None = None  # for a POD hop: whose eth0 ("source", a pod name)

    @property
    def label(self) -> str:
        return f"{self.pod} {self.interface}" if self.kind is HopKind.POD else f"{self.node} {self.interface}"


class PathOutcome(Enum):
    DELIVERED = "delivered"  # request and answer made it
    REFUSED = "refused"  # a reset came back from the destination's side (see `refusal`: the pod, or unknown)
    ICMP_ERROR = "icmp-error"  # an ICMP error that is no reject: unreachable, fragmentation needed
    DROPPED = "dropped"  # the request vanished
    REPLY_LOST = "reply-lost"  # the answer vanished on the way back
    UNKNOWN = "unknown"  # the captures do not show it (blind hops)
    REJECTED = "rejected"  # a node's reject rule answered for the pod (ICMP error or reset): see `refusal`


@dataclass(frozen=True)
class HopPath:
    """One step's connection followed hop by hop: where the packet was last seen and why.
    `at` indexes `hops`: the hop where it was lost (the first that missed it) or refused."""

    step_key: str
    flow: str  # "10.244.1.7:40112 → 10.96.0.20:80 tcp"
    hops: tuple[Hop, ...]
    outcome: PathOutcome
    cause: str  # a key of checks/hops.yaml
    at: int | None = None
    params: tuple[tuple[str, str], ...] = ()  # fill the cause's template in checks/hops.yaml
    summary: str = ""  # the cause in words, rendered from the catalog
    connections: int = 1  # connections the step made; this path is the most telling one
    same_outcome: int = 1  # how many of them ended like this one
    backends: tuple[tuple[str, int], ...] = ()  # Service spread: translated destination -> connections
    refusal: Refusal | None = None  # who turned it away (None when delivered)


@dataclass(frozen=True)
class CaptureStatus:
    """How the capture went, for the report: the mode, what was seen, and the blind spots."""

    mode: CaptureMode
    points: tuple[str, ...] = ()  # capture points that saw the traffic
    blind: tuple[str, ...] = ()  # "node-2: <why>", one line each
    clocks: tuple[str, ...] = ()  # "node-2's clock is 2.0 s behind node-1's: …", one line per node off


@dataclass(frozen=True)
class Diagnosis:
    """The summary: the most likely root cause, its layer, the checks it explains and what to run next."""

    state: State
    layer: Layer | None  # the layer of the most likely root cause: the report's "FAIL at <layer>"
    check_id: str | None
    cause: str | None
    headline: str
    remediation: str = ""
    commands: tuple[str, ...] = ()
    path: HopPath | None = None  # where the packet of the broken layer was lost, when captured
    consequences: tuple[str, ...] = ()  # IDs of the failed checks this cause explains


@dataclass(frozen=True)
class Report:
    target: str
    namespace: str
    source: str
    layers: tuple[LayerResult, ...]
    diagnosis: Diagnosis
    notes: tuple[str, ...] = ()
    duration_s: float = 0.0
    paths: tuple[HopPath, ...] = ()
    capture: CaptureStatus = CaptureStatus(CaptureMode.OFF)
    cluster: ClusterKind | None = None  # the CNI and Service proxy, refined from the node devices
    started_at: datetime | None = None  # when the check started (UTC), for CI reports
    sample: tuple[SampledNode, ...] = ()  # the nodes probed and why (Plan.sample)

    @property
    def state(self) -> State:
        return self.diagnosis.state

# --- what the cluster is made of: its CNI and Service proxy (check.cluster_kind, judge.cluster_kind) ---


class Cni(Enum):
    FLANNEL = "flannel"
    CALICO = "calico"
    CANAL = "canal"  # flannel's network with Calico's policy
    CILIUM = "cilium"
    AWS_VPC = "aws-vpc-cni"
    KUBE_ROUTER = "kube-router"
    ANTREA = "antrea"
    WEAVE = "weave"
    UNKNOWN = "unknown"


class Overlay(Enum):
    """How pod traffic crosses between nodes."""

    VXLAN = "vxlan"
    GENEVE = "geneve"
    IPIP = "ipip"
    ROUTED = "routed"  # no encapsulation: routes (host-gw, BGP, native routing, the VPC's own)
    UNKNOWN = "unknown"


class ServiceProxy(Enum):
    """What translates a Service IP."""

    KUBE_PROXY = "kube-proxy"
    CILIUM = "cilium"  # kube-proxy replacement: eBPF, at the socket
    CALICO = "calico"  # Calico's eBPF data plane
    KUBE_ROUTER = "kube-router"  # --run-service-proxy: IPVS
    UNKNOWN = "unknown"


class ProxyMode(Enum):
    IPTABLES = "iptables"
    NFTABLES = "nftables"
    IPVS = "ipvs"
    EBPF = "ebpf"
    UNKNOWN = "unknown"


class Confidence(Enum):
    HIGH = "high"  # the component's own objects (and the nodes' devices) say so
    MEDIUM = "medium"  # one weaker signal (defaults, initial IPPool settings, devices alone), or signals that disagree
    LOW = "low"  # nothing says it: unknown


@dataclass(frozen=True)
class CniKind:
    name: Cni
    overlay: Overlay
    confidence: Confidence
    evidence: tuple[str, ...] = ()  # the lines it was decided from (or, unknown, what was seen)


@dataclass(frozen=True)
class ProxyKind:
    name: ServiceProxy
    mode: ProxyMode
    confidence: Confidence
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterKind:
    """What the cluster is made of, for the report's header: decided from kube-system's objects at
    resolve time, refined by the judge from the devices the node captures listed."""

    cni: CniKind
    proxy: ProxyKind


# --- a smoke file's expectations and their results (check.smoke → judge.smoke → report.smoke) ---


class ExpectKind(Enum):
    HEALTHY = "healthy"  # a Service whose check must pass
    ALLOW = "allow"  # a flow that must get through
    DENY = "deny"  # a flow that must not
    RESOLVE = "resolve"  # a name that must resolve


@dataclass(frozen=True)
class Expectation:
    """One line of a smoke file, as the results name it: `where` is "flows[2]", `line` its line."""

    kind: ExpectKind
    where: str
    line: int
    title: str  # "ops/deploy/toolbox → shop/svc/db TCP/5432"
    name: str = ""  # the file's own name for it, if any


@dataclass(frozen=True)
class ExpectationResult:
    """Whether an expectation held, on what evidence, and, when it did not, the check's diagnosis
    (its report: layer, cause, hop). `confirmed`: the capture that proves a denial (or why none does)."""

    expectation: Expectation
    state: State
    message: str
    evidence: tuple[str, ...] = ()
    confirmed: str | None = None
    reports: tuple[Report, ...] = ()  # the check (or the flow's, per destination) it was judged from
    diagnosis: Diagnosis | None = None  # why it failed, when it did


@dataclass(frozen=True)
class SmokeReport:
    file: str
    results: tuple[ExpectationResult, ...]
    duration_s: float = 0.0
    probes: int = 0  # probe pods the run created

    @property
    def state(self) -> State:
        return max((r.state for r in self.results), key=lambda s: s.rank, default=State.SKIP)
