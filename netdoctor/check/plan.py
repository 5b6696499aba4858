"""The plan stage: from Facts, which probes to create and which steps to run, each with the
outcome it expects. Pure: `--plan` prints it, the runner executes it, the judge reads it back.

Called by check.command after resolve. Expectations come from the policy verdicts resolve computed:
a flow the policies deny is expected to be BLOCKED, so a connection that passes is a finding.
The probes go to a sample of nodes chosen for the question (`sample`), not to every node: the
source's, the backends' (a few distinct ones), the DNS pods', then one per distinct (zone, pool,
kernel, runtime) up to --max-nodes; each with its reasons, which --plan shows. DF pings run only
on the pairs the check's traffic crosses, NodePort on the sampled nodes: the probes and steps do
not grow with the cluster's nodes, pods, Services or policies.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from netdoctor.check.nodes import MAX_BACKEND_NODES, MAX_DNS_NODES, NodeChoice, involved
from netdoctor.cluster.objects import Pod
from netdoctor.model import (
    Action, CaptureMode, DnsQuery, Expect, Facts, InspectListeners, Layer, NodeReason, Ping, Plan, PlannedProbe,
    ProbePurpose, ReadResolvConf, SampledNode, Step, TcpConnect, UdpExchange, Why, group_text, node_group,
    probe_excluded,
)

SOURCE = "source"
SMALL_PING = 56
# DF payloads that matter for overlays: a 1450-byte VXLAN MTU carries 1422, a plain 1500 one 1472.
MTU_PINGS = (1422, 1472)
# The Service IP's coverage of its N ready backends. Balancing is uniformly random, so k attempts
# miss a given backend with probability (1 - 1/N)^k. The first round makes
# service_attempts_per_backend × N attempts; with capture the runner adds one round of
# attempts_to_cover(N) when the captures show a ready backend no connection reached yet (or cannot
# tell them apart); without capture the first round alone makes attempts_to_cover(N). A round's
# attempts run at once, so the check takes at most two --timeout and MAX_SERVICE_ATTEMPTS attempts.
MISS_PROBABILITY = 1e-3
MAX_SERVICE_ATTEMPTS = 100


@dataclass(frozen=True)
class Options:
    nodes: NodeChoice = NodeChoice()  # --nodes, --max-nodes
    dns_attempts: int = 10
    lookup_attempts: int = 3  # a resolver retries too: a name resolves if one of these is answered
    backend_dns_attempts: int = 3
    service_attempts_per_backend: int = 3
    capture: CaptureMode = CaptureMode.AUTO
    capture_namespace: str | None = None  # where node capture probes run (default: the source's)


def build(f: Facts, options: Options = Options()) -> Plan:
    chosen = sample(f, options.nodes)
    probes = _probes(f, options, [n for n in chosen if n.excluded is None])
    traffic = [p for p in probes if p.purpose is ProbePurpose.TRAFFIC]
    steps = [*_listener_steps(f), *_dns_steps(f, options), *_pod_steps(f), *_service_steps(f, options, traffic),
             *_node_steps(f, traffic)]
    return Plan(tuple(probes), tuple(steps), _notes(f, chosen), options.capture, chosen)


def sample(f: Facts, choice: NodeChoice = NodeChoice()) -> tuple[SampledNode, ...]:
    """The nodes the question involves, in this order, each with why: the source's, the
    backends' (MAX_BACKEND_NODES distinct ones, ready backends first), the DNS pods'
    (MAX_DNS_NODES), then those --nodes names (or all of them), or by default the first node of
    each (zone, pool, kernel, runtime) not represented yet. At most `max_nodes` can host a probe
    unless --nodes says which; one that cannot (NotReady, cordoned, tainted) is kept with why
    (`excluded`) and costs nothing."""
    known = {n.name: n for n in f.nodes}
    why: dict[str, list[Why]] = {}

    def add(name: str | None, reason: Why) -> None:
        if name in known:
            why.setdefault(name, []).append(reason)

    add(f.source_node, Why(NodeReason.SOURCE))
    for name in involved(f.backends, MAX_BACKEND_NODES):
        add(name, Why(NodeReason.BACKEND, ", ".join(p.name for p in f.backends if p.node_name == name)))
    for name in involved(f.dns_backends, MAX_DNS_NODES):
        add(name, Why(NodeReason.DNS, ", ".join(p.name for p in f.dns_backends if p.node_name == name)))
    if choice.all or choice.names is not None:
        for name in known if choice.all else choice.names:
            add(name, Why(NodeReason.ALL if choice.all else NodeReason.REQUESTED))
        return tuple(SampledNode(n, tuple(w), probe_excluded(known[n])) for n, w in why.items())
    taken = {node_group(known[n]) for n in why if probe_excluded(known[n]) is None}
    for node in f.nodes:
        if probe_excluded(node) is None and node_group(node) not in taken and node.name not in why:
            taken.add(node_group(node))
            add(node.name, Why(NodeReason.GROUP, group_text(node)))
    return _capped(tuple(SampledNode(n, tuple(w), probe_excluded(known[n])) for n, w in why.items()),
                   choice.max_nodes)


def _capped(nodes: tuple[SampledNode, ...], cap: int) -> tuple[SampledNode, ...]:
    """The first `cap` nodes that can host a probe (in the sample's order of reasons), and the
    excluded ones."""
    kept, hosting = [], 0
    for node in nodes:
        if node.excluded is None:
            if hosting == cap:
                continue
            hosting += 1
        kept.append(node)
    return tuple(kept)


def role_name(prefix: str, node: str) -> str:
    """A probe role from a node name that may hold dots or capitals (ip-10-0-1-2.ec2.internal):
    a DNS label short enough for `netdoctor-<run>-<role>` to be a valid pod name."""
    label = re.sub(r"[^a-z0-9-]+", "-", node.lower()).strip("-")
    return f"{prefix}-{label}"[:40].rstrip("-")


def _probes(f: Facts, options: Options, nodes: list[SampledNode]) -> list[PlannedProbe]:
    """The source probe, a traffic probe on each other sampled node that sends the check's
    traffic (a node sampled only for its DNS pods does not: the DNS queries come from the
    source), and with capture a hostNetwork capture probe on each sampled node."""
    labels, who = f.source_labels, f.impersonates
    capture = options.capture is not CaptureMode.OFF
    source = PlannedProbe(SOURCE, f.source_node, f.source_namespace, labels, who, capture=capture)
    senders = [n.name for n in nodes if any(w.reason is not NodeReason.DNS for w in n.why)]
    others = [PlannedProbe(role_name("node", n), n, f.source_namespace, labels, who, capture=capture)
              for n in senders if n != f.source_node]
    traffic = [source, *others] if f.backends and f.target_port else [source]
    namespace = options.capture_namespace or f.source_namespace
    captures = [PlannedProbe(role_name("capture", n.name), n.name, namespace, purpose=ProbePurpose.NODE_CAPTURE)
                for n in nodes] if capture else []
    return traffic + captures


def _notes(f: Facts, chosen: tuple[SampledNode, ...]) -> tuple[str, ...]:
    notes = []
    if f.impersonates:
        labels = ",".join(f"{k}={v}" for k, v in f.source_labels)
        notes.append(f"probes impersonate {f.impersonates} (labels {labels}) so the NetworkPolicies judge them alike")
    skipped = [f"{n.name} ({n.excluded})" for n in chosen if n.excluded]
    if skipped:
        notes.append(f"no probe on {', '.join(skipped)}")
    notes += _shape_notes(f)
    notes += [str(u) for u in f.unread]
    return tuple(notes)


def _shape_notes(f: Facts) -> list[str]:
    """What the Service's shape makes of the check: the port checked among several, what its
    traffic policies expect from each node, why one client reaches one backend."""
    svc, sp = f.service, f.service_port
    if svc is None or sp is None:
        return []
    notes = []
    others = [p.name or f"{p.protocol}/{p.port}" for p in svc.ports if p != sp]
    if others:
        notes.append(f"Service {svc.name} has {len(svc.ports)} ports: checking {_port_text(sp)}; for the "
                     f"other{'s' if len(others) > 1 else ''} use --port {', '.join(others)}")
    if protocol(f) not in PROBED_PROTOCOLS:
        notes.append(f"{protocol(f)} is not probed: only the API objects are checked for port {sp.port}")
    local = sorted({p.node_name for p in ready_backends(f) if p.node_name})
    if svc.internal_traffic_policy == "Local" and svc.cluster_ip:
        notes.append(f"internalTrafficPolicy Local: the Service IP is expected to work from the nodes with a ready "
                     f"endpoint ({', '.join(local) or 'none'}) and to drop everywhere else")
    if svc.external_traffic_policy == "Local" and sp.node_port:
        notes.append(f"externalTrafficPolicy Local: from outside the cluster only {', '.join(local) or 'no node'} "
                     f"answer(s) on NodePort {sp.node_port}; the probes are pods, which kube-proxy sends to any endpoint")
    if sticky(f):
        notes.append("sessionAffinity ClientIP: one client reaches one backend through the Service IP; every "
                     "backend is checked on its pod IP instead")
    return notes


def _port_text(sp) -> str:
    return f"{sp.port}/{sp.protocol}" + (f" ({sp.name})" if sp.name else "")


def _step(key: str, check_id: str, layer: Layer, probe: str | None, action: Action, title: str,
          expect: Expect = Expect.SUCCEED) -> Step:
    return Step(key, check_id, layer, probe, action, expect, title)


def _expect(f: Facts, backend: str) -> Expect:
    flow = next((p for p in f.policy or () if p.backend == backend), None)
    return Expect.BLOCKED if flow and not flow.verdict.allowed else Expect.SUCCEED


def _reachable_backends(f: Facts) -> list[Pod]:
    return [p for p in f.backends if p.ip and p.phase == "Running"]


def traffic_backends(f: Facts) -> list[Pod]:
    """The Running backends the Service sends traffic to: its endpoints that are ready (with
    publishNotReadyAddresses every one is) or still serving while they terminate. A pod that is
    not Ready gets no traffic, so it need not listen nor answer (the judges show it, and require
    only these); every Running backend when none is an endpoint (all of them must then show
    why) or without a Service."""
    running = _reachable_backends(f)
    if f.slices is None:
        return running
    serving = {e.ip for s in f.slices for e in s.endpoints if e.ready or e.serving}
    return [p for p in running if p.ip in serving] or running


def ready_backends(f: Facts, node: str | None = None) -> list[Pod]:
    """The backends the Service balances to: its ready endpoints (the pods' readiness without a
    Service), and from `node` with internalTrafficPolicy Local only that node's. The plan sizes
    the Service IP rounds by them, judge.coverage accounts for each."""
    if f.slices is None:
        pods = [p for p in f.backends if p.ip and p.ready and not p.deleting]
    else:
        ready = {e.ip for s in f.slices for e in s.endpoints if e.ready and not e.terminating}
        pods = [p for p in f.backends if p.ip in ready]
    if node is not None and f.service is not None and f.service.internal_traffic_policy == "Local":
        return [p for p in pods if p.node_name == node]
    return pods


def sticky(f: Facts) -> bool:
    """sessionAffinity ClientIP: every connection of one client goes to one backend."""
    return f.service is not None and f.service.session_affinity == "ClientIP"


PROBED_PROTOCOLS = ("TCP", "UDP")


def protocol(f: Facts) -> str:
    """The protocol of the port checked: the Service port's, else the one the pods declare for it."""
    if f.service_port is not None:
        return f.service_port.protocol
    declared = {c.protocol for p in f.backends for c in p.container_ports if c.port == f.target_port}
    return "UDP" if declared == {"UDP"} else "TCP"


def port_of(f: Facts, pod: Pod) -> int | None:
    """The pod's own number for the checked port: a named targetPort may map differently per pod."""
    return dict(f.backend_ports).get(pod.name, f.target_port)


def _serves_dns(f: Facts) -> bool:
    sp = f.service_port
    names = (sp.name, str(sp.target_port)) if sp else ()
    return 53 in (f.port, f.target_port) or any(n and n.startswith("dns") for n in names)


def _dns_name(f: Facts) -> str:
    """The name a DNS port is asked for: any will do, a response of any kind shows the port answers."""
    if f.service is not None:
        return f"{f.service.name}.{f.namespace}.svc.{f.cluster_domain}."
    return f"kubernetes.default.svc.{f.cluster_domain}."


def _connect(f: Facts, ip: str, port: int, attempts: int = 1, until_covered: int = 0) -> TcpConnect:
    """The checked port's probe: a TCP connect, or a UDP exchange (a DNS query where it serves DNS)."""
    if protocol(f) == "UDP":
        return UdpExchange(ip, port, attempts, until_covered, dns_name=_dns_name(f) if _serves_dns(f) else None)
    return TcpConnect(ip, port, attempts, until_covered)


def _to(ip: str, port: int, f: Facts) -> str:
    return f"{ip}:{port}" + ("/udp" if protocol(f) == "UDP" else "")


def _probing(f: Facts) -> bool:
    return bool(f.target_port) and protocol(f) in PROBED_PROTOCOLS


def _declaring_first(f: Facts, pod: Pod, port: int) -> tuple[str, ...]:
    """The pod's containers, the one declaring the port first: its exec is the likeliest to work."""
    wanted = protocol(f)
    declaring = [c.container for c in pod.container_ports if c.container and c.protocol == wanted and c.port == port]
    return tuple(dict.fromkeys([*declaring, *pod.containers]))


def attempts_to_cover(backends: int) -> int:
    """The fewest attempts that miss a given one of `backends`, balanced uniformly at random,
    with a probability below MISS_PROBABILITY: the smallest k with (1 - 1/N)^k < P."""
    if backends < 2:
        return 1
    return math.floor(math.log(MISS_PROBABILITY) / math.log(1 - 1 / backends)) + 1


def _listener_steps(f: Facts) -> list[Step]:
    if not _probing(f):
        return []
    return [_step(f"listen:{p.name}", "ND-TGT-003", Layer.TARGET, None,
                  InspectListeners(p.name, port_of(f, p), protocol(f), _declaring_first(f, p, port_of(f, p))),
                  f"sockets of {p.name}") for p in _reachable_backends(f)]


def _dns_steps(f: Facts, o: Options) -> list[Step]:
    svc = f.service
    if svc is None:
        return []
    fqdn = f"{svc.name}.{f.namespace}.svc.{f.cluster_domain}."
    short = svc.name if f.source_namespace == f.namespace else f"{svc.name}.{f.namespace}"
    rdtype = "CNAME" if svc.external_name else "A"  # an ExternalName Service is a CNAME
    steps = [
        _step("dns:resolv", "ND-DNS-001", Layer.DNS, SOURCE, ReadResolvConf(f.source_pod), "read resolv.conf"),
        _step("dns:short", "ND-DNS-002", Layer.DNS, SOURCE,
              DnsQuery(None, short, rdtype, search=True, attempts=o.lookup_attempts), f"resolve {short}"),
        _step("dns:fqdn", "ND-DNS-002", Layer.DNS, SOURCE, DnsQuery(None, fqdn, rdtype, attempts=o.lookup_attempts),
              f"resolve {fqdn}"),
        _step("dns:repeat", "ND-DNS-004", Layer.DNS, SOURCE, DnsQuery(None, fqdn, rdtype, attempts=o.dns_attempts),
              f"resolve {fqdn} ×{o.dns_attempts}"),
    ]
    steps += [_step(f"dns:backend:{p.name}", "ND-DNS-005", Layer.DNS, SOURCE,
                    DnsQuery(p.ip, fqdn, rdtype, attempts=o.backend_dns_attempts), f"ask {p.name} ({p.ip})")
              for p in f.dns_backends if p.ip]
    return steps


def _pod_steps(f: Facts) -> list[Step]:
    if not _probing(f):
        return []
    return [_step(f"pod:{p.name}", "ND-POD-001", Layer.POD, SOURCE, _connect(f, p.ip, port_of(f, p)),
                  f"source → {p.name} {_to(p.ip, port_of(f, p), f)}", _expect(f, p.name)) for p in _reachable_backends(f)]


def _all_blocked(f: Facts) -> Expect:
    flows = f.policy or ()
    return Expect.BLOCKED if flows and not any(p.verdict.allowed for p in flows) else Expect.SUCCEED


def service_expect(f: Facts, node: str | None) -> Expect:
    """What the Service IP should do for a probe on `node`: BLOCKED when the policies deny every
    backend; DROPPED with internalTrafficPolicy Local where the node has no ready endpoint (but
    another has: with none anywhere kube-proxy rejects, a fault)."""
    blocked = _all_blocked(f)
    if blocked is Expect.BLOCKED or node is None:
        return blocked
    if ready_backends(f) and not ready_backends(f, node):
        return Expect.DROPPED
    return Expect.SUCCEED


def _service_steps(f: Facts, o: Options, traffic: list[PlannedProbe]) -> list[Step]:
    svc, sp = f.service, f.service_port
    if svc is None or sp is None or protocol(f) not in PROBED_PROTOCOLS:
        return []
    steps = []
    if svc.cluster_ip:
        expect = service_expect(f, f.source_node)
        first, more = _service_rounds(len(ready_backends(f, f.source_node)), o, sticky(f) or expect is Expect.DROPPED)
        title = f"source → {_to(svc.cluster_ip, sp.port, f)} ×{first}" + (
            f" (up to ×{first + more} until every ready backend is reached)" if more else "") + (
            f" (expected to drop: no ready endpoint on {f.source_node})" if expect is Expect.DROPPED else "")
        steps.append(_step("svc:clusterip", "ND-SVC-001", Layer.SERVICE, SOURCE,
                           _connect(f, svc.cluster_ip, sp.port, first, more), title, expect))
    if sp.node_port:
        sampled = {p.node for p in traffic}
        steps += [_step(f"nodeport:{n.name}", "ND-SVC-002", Layer.SERVICE, SOURCE, _connect(f, n.internal_ip, sp.node_port),
                        f"source → {n.name} {_to(n.internal_ip, sp.node_port, f)}") for n in f.nodes
                  if n.name in sampled and n.ready and n.internal_ip]
    return steps


def _service_rounds(ready: int, o: Options, one_backend: bool = False) -> tuple[int, int]:
    """The Service IP's first round of attempts, and the round the runner may add (see
    MISS_PROBABILITY): none for a single backend, none without capture (the first round makes up);
    none when every connection goes to one backend or none (`one_backend`: session affinity, or a
    node that drops by its traffic policy)."""
    first = min(MAX_SERVICE_ATTEMPTS, max(4, o.service_attempts_per_backend * ready))
    if ready < 2 or one_backend:
        return first, 0
    if o.capture is CaptureMode.OFF:
        return min(MAX_SERVICE_ATTEMPTS, max(first, attempts_to_cover(ready))), 0
    return first, min(attempts_to_cover(ready), MAX_SERVICE_ATTEMPTS - first)


def _icmp_ok(f: Facts, backend: str) -> bool:
    flow = next((p for p in f.policy or () if p.backend == backend), None)
    return flow is None or flow.icmp


def _ping_steps(probe: PlannedProbe, target: str, key: str, ip: str | None, to_probe: str | None = None,
                sizes: tuple[int, ...] = (SMALL_PING, *MTU_PINGS)) -> list[Step]:
    return [_step(f"ping:{probe.role}:{key}:{size}", "ND-NODE-004", Layer.NODE, probe.role,
                  Ping(ip, size, size != SMALL_PING, to_probe), f"{probe.node or '?'} ping {target} {size}B")
            for size in sizes]


def node_backends(f: Facts) -> list[Pod]:
    """The backends the cross-node layer aims at: one per node (a ready one first) on the
    backends' first MAX_BACKEND_NODES nodes, the sample's. Every probe tries the path to each
    kind of backend node, and the steps do not grow with the replicas (the source still tries
    every backend on its pod IP)."""
    running = sorted(_reachable_backends(f), key=lambda p: not p.ready)
    nodes = involved(running, MAX_BACKEND_NODES)
    return [next(p for p in running if p.node_name == n) for n in nodes]


def _node_steps(f: Facts, probes: list[PlannedProbe]) -> list[Step]:
    """Each node's probe → one backend per backend node (TCP, and ping where the policies admit
    ICMP), → the Service IP, and DF pings at the overlay sizes on the pairs the traffic crosses: to a backend
    on another node, and to the probe on that node (the path MTU where ICMP to the backends is
    not admitted). A probe pings a backend on its own node with a small ping only."""
    if not _probing(f):
        return []
    steps = []
    targets = node_backends(f)
    backend_nodes = {p.node_name for p in targets}
    for probe in probes:
        where = probe.node or "?"
        for p in targets:
            steps.append(_step(f"node:{probe.role}:{p.name}", "ND-NODE-002", Layer.NODE, probe.role,
                               _connect(f, p.ip, port_of(f, p)), f"{where} → {p.name} ({p.node_name})",
                               _expect(f, p.name)))
            if _icmp_ok(f, p.name):
                sizes = (SMALL_PING, *MTU_PINGS) if p.node_name != probe.node else (SMALL_PING,)
                steps += _ping_steps(probe, p.name, p.name, p.ip, sizes=sizes)
        if f.probe_icmp:
            for peer in probes:
                if peer.node != probe.node and peer.node in backend_nodes:
                    steps += _ping_steps(probe, f"probe on {peer.node}", f"probe-{peer.role}", None, peer.role)
        if f.service and f.service.cluster_ip and f.service_port:
            sp = f.service_port
            steps.append(_step(f"nodesvc:{probe.role}", "ND-NODE-003", Layer.NODE, probe.role,
                               _connect(f, f.service.cluster_ip, sp.port, 3),
                               f"{where} → {_to(f.service.cluster_ip, sp.port, f)} ×3", service_expect(f, probe.node)))
    return steps
