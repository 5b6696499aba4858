"""`netdoctor check` on every Service of the zoo (netdoctor/lab/scenarios/zoo.yaml): each real-world
shape is healthy, so each check exits 0 with no FAIL, every port of a multi-port Service too (kube-dns
among them). A WARN only where README's "Service shapes" says why. One zoo lab for the module; the
Services are the ones its API lists, not a list kept here."""

from __future__ import annotations

import pytest

from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.daemon import scenario_objects
from netdoctor.lab.state import LabConfig

from labkit import check_json, start, unique_name
from test_zoo import Zoo, frozen_rollout

pytestmark = pytest.mark.lab

# README, "Service shapes": a rollout frozen half-way keeps a new pod that never turns Ready (a
# WARN of the pods, ND-TGT-002) and an endpoint that is not ready beside a terminating one (ND-EP-001);
# the Service itself works. No other WARN is documented.
ALLOWED_WARNINGS = {("zoo", "rollout"): {("ND-TGT-002", "not-ready"), ("ND-EP-001", "partly-ready")}}

# What each shape's verdict must say, beyond passing: the way it was found healthy.
SAYS = {
    ("zoo", "distroless"): ("ND-TGT-003", "the source's connection to"),  # no `cat` in the image: the packets
    ("kube-system", "kube-dns"): ("ND-TGT-003", "the source's connection to"),
    ("zoo", "sidecar"): ("ND-TGT-003", "(read in container app)"),  # the second container declares the port
    ("zoo", "multi"): ("ND-TGT-003", "listen on 8080, 8081"),  # one named port, two numbers
    ("zoo", "statsd"): ("ND-POD-001", "/udp: answered"),
    ("zoo", "dns"): ("ND-SVC-001", "/udp ×"),
    ("zoo", "node-agent"): ("ND-NODE-003", "drops, as internalTrafficPolicy Local means"),
    ("zoo", "sticky"): ("ND-SVC-001", "session affinity ClientIP"),
    ("zoo", "peers"): ("ND-TGT-002", "publishNotReadyAddresses"),
    ("zoo", "gateway"): ("ND-TGT-001", "load balancer: none yet"),
    ("zoo", "alias"): ("ND-DNS-003", "multi.zoo.svc.cluster.local."),
    ("zoo", "legacy"): ("ND-TGT-003", "legacy: port 8080 bound"),  # the pod its hand-made EndpointSlice names
}


@pytest.fixture(scope="module")
def zoo():
    lab = start(LabConfig(unique_name("v"), scenario="zoo"))
    try:
        ready = Zoo(lab)
        lab.wait(lambda: frozen_rollout(ready), timeout=20, what="the frozen rollout")
        yield ready
    finally:
        lifecycle.down(lab.name)


def services(zoo: Zoo) -> list:
    return [s for s in zoo.v1.list_service_for_all_namespaces().items if s.metadata.namespace != "default"]


def verdict(zoo: Zoo, namespace: str, name: str, *extra: str) -> tuple[int, dict, dict[str, dict]]:
    code, report, err = check_json(zoo.lab, *extra, target=f"svc/{name}", namespace=namespace)
    assert report, err
    return code, report, {c["id"]: c for layer in report["layers"] for c in layer["checks"]}


def faults(namespace: str, name: str, found: dict[str, dict]) -> list[str]:
    allowed = ALLOWED_WARNINGS.get((namespace, name), set())
    return [f"{namespace}/{name} {c['id']} {c['state']} {c['cause']}: {c['message']}" for c in found.values()
            if c["state"] in ("fail", "error") or (c["state"] == "warn" and (c["id"], c["cause"]) not in allowed)]


def test_the_api_lists_every_service_of_the_zoo(zoo):
    shipped = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in scenario_objects("zoo")
               if o["kind"] == "Service"}
    listed = {(s.metadata.namespace, s.metadata.name) for s in services(zoo)}
    assert shipped | {("kube-system", "kube-dns")} == listed
    assert set(SAYS) | set(ALLOWED_WARNINGS) <= listed


def test_every_service_of_the_zoo_passes(zoo):
    wrong, unsaid = [], []
    for svc in services(zoo):
        namespace, name = svc.metadata.namespace, svc.metadata.name
        code, report, found = verdict(zoo, namespace, name)
        wrong += faults(namespace, name, found)
        if code != ExitCode.OK:
            wrong.append(f"{namespace}/{name}: exit {code}: {report['diagnosis']['headline']}")
        check_id, words = SAYS.get((namespace, name), (None, ""))
        if check_id and (found[check_id]["state"] != "pass" or words not in found[check_id]["message"] + " ".join(
                found[check_id]["evidence"])):
            unsaid.append(f"{namespace}/{name} {check_id}: {found[check_id]['message']} {found[check_id]['evidence']}")
    assert not wrong, "\n".join(wrong)
    assert not unsaid, "\n".join(unsaid)


def test_every_other_port_of_a_multi_port_service_passes_too(zoo):
    """The check's default is the first port; each other port by its name (kube-dns: TCP 53 beside UDP)."""
    wrong, checked = [], []
    for svc in services(zoo):
        for port in (svc.spec.ports or [])[1:]:
            namespace, name = svc.metadata.namespace, svc.metadata.name
            code, report, found = verdict(zoo, namespace, name, "--port", port.name)
            checked.append(f"{namespace}/{name}:{port.name}")
            wrong += faults(namespace, name, found)
            if code != ExitCode.OK:
                wrong.append(f"{namespace}/{name} --port {port.name}: exit {code}: {report['diagnosis']['headline']}")
            probed = found["ND-POD-001"]["evidence"]
            if not probed or any(line.split(": ")[0].endswith("/udp") != (port.protocol == "UDP") for line in probed):
                wrong.append(f"{namespace}/{name} --port {port.name} ({port.protocol}): probed {probed}")
    assert {"kube-system/kube-dns:dns-tcp", "zoo/multi:admin", "zoo/dns:dns-tcp"} <= set(checked)
    assert not wrong, "\n".join(wrong)
