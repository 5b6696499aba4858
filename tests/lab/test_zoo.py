"""The zoo scenario: real-world Service shapes, each behaving at the data plane as on a real cluster.

The first tests are pure (what the lab's kube-proxy, controllers, DNS and API server compute for
these shapes). The lab tests share one `zoo` lab for the module and send real packets from pods
(the zoo's client Deployment has one pod per node), from a node, and from the fabric namespace,
the lab's stand-in for a client outside the cluster.
"""

from __future__ import annotations

import json
import socket
import time

import dns.message
import dns.query
import dns.rdatatype
import pytest

from netdoctor.lab import lifecycle, net
from netdoctor.lab.api.status import ApiError
from netdoctor.lab.api.store import Store
from netdoctor.lab.dnsserver import Zone
from netdoctor.lab.endpoints import desired_slices
from netdoctor.lab.proxy import NodeInfo, render_kube_proxy
from netdoctor.lab.runtime import executable
from netdoctor.lab.state import LabConfig
from netdoctor.lab.workloads import new_replicas, old_scale_down, pods_to_delete, rolling_limits

from labkit import in_netns, run_in, start, unique_name

NODE1 = NodeInfo("node-1", "172.30.0.1", "10.244.1.0/24", "10.244.0.0/16")
NODE2 = NodeInfo("node-2", "172.30.0.2", "10.244.2.0/24", "10.244.0.0/16")
READY = {"ready": True, "serving": True, "terminating": False}
DNS_IP = "10.96.0.10"


def service(name, ports, **spec):
    return {"metadata": {"name": name, "namespace": "zoo", "uid": f"uid-{name}"},
            "spec": {"clusterIP": "10.96.0.50", "ports": ports, "selector": {"app": name}, **spec}}


def endpoint_slice(svc, port, endpoints):
    return {"metadata": {"name": f"{svc}-x", "namespace": "zoo", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": cond, "nodeName": node} for ip, cond, node in endpoints]}


HTTP = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
ONE_ON_NODE2 = [endpoint_slice("s", 8080, [("10.244.2.5", READY, "node-2")])]


# ---- kube-proxy ---------------------------------------------------------------------------------

def test_internal_traffic_policy_local_drops_on_a_node_without_a_local_endpoint():
    svcs = [service("s", HTTP, internalTrafficPolicy="Local")]
    far, near = render_kube_proxy("kp", svcs, ONE_ON_NODE2, NODE1), render_kube_proxy("kp", svcs, ONE_ON_NODE2, NODE2)
    assert "10.96.0.50 . tcp . 80 : goto drop-chain" in far and "dnat to" not in far
    assert "10.96.0.50 . tcp . 80 : goto local-" in near and "dnat to 10.244.2.5:8080" in near
    nothing = render_kube_proxy("kp", svcs, [], NODE1)
    assert "10.96.0.50 . tcp . 80 : goto reject-chain" in nothing  # no endpoint anywhere: reject


def test_external_traffic_policy_local_keeps_pod_traffic_and_drops_outsiders_without_local_endpoint():
    svcs = [service("s", [{**HTTP[0], "nodePort": 30080}], type="NodePort", externalTrafficPolicy="Local")]
    far = render_kube_proxy("kp", svcs, ONE_ON_NODE2, NODE1)
    assert "tcp . 30080 : goto external-" in far and "tcp . 30080 : goto drop-chain" in far
    external = far[far.index("chain external-"):]
    external = external[:external.index("}")]
    assert "ip saddr 10.244.0.0/16 goto service-" in external  # pods short-circuit to any endpoint
    assert "fib saddr type local jump mark-for-masquerade" in external and "goto local-" not in external
    near = render_kube_proxy("kp", svcs, ONE_ON_NODE2, NODE2)
    assert "goto local-" in near and "tcp . 30080 : goto drop-chain" not in near


def test_session_affinity_sets_record_and_pin_clients():
    svcs = [service("s", HTTP, sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})]
    slices = [endpoint_slice("s", 8080, [("10.244.1.5", READY, "node-1"), ("10.244.2.5", READY, "node-2")])]
    text = render_kube_proxy("kp", svcs, slices, NODE1)
    assert text.count("flags dynamic,timeout\n\t\ttimeout 600s") == 2
    assert "ip saddr @affinity-" in text and "update @affinity-" in text
    assert text.index("ip saddr @affinity-") < text.index("numgen random mod 2")


def test_rewriting_in_place_keeps_affinity_sets_and_drops_what_is_gone():
    sticky = service("s", HTTP, sessionAffinity="ClientIP")
    other = {**service("o", HTTP), "metadata": {"name": "o", "namespace": "zoo", "uid": "uid-o"}}
    other["spec"]["clusterIP"] = "10.96.0.51"
    slices = [endpoint_slice("s", 8080, [("10.244.1.5", READY, "node-1")]),
              endpoint_slice("o", 8080, [("10.244.1.6", READY, "node-1")])]
    first = render_kube_proxy("kp", [sticky, other], slices, NODE1)
    second = render_kube_proxy("kp", [sticky], slices, NODE1, previous=first)
    head = second[:second.index("table ip kp {\n")]
    assert head.startswith("table ip kp {}\nflush table ip kp\n") and "delete table" not in head
    assert "flush map ip kp service-ips" in head
    assert "delete chain ip kp endpoint-" in head and "zoo/o/tcp/http__10.244.1.6/8080" in head
    assert "affinity-" not in head  # the set stays, entries and all
    assert "set affinity-" in second[len(head):]


# ---- controllers, DNS, API server --------------------------------------------------------------

def pod(name, ip, node="node-1", ready=True, **extra):
    meta = {"name": name, "namespace": "zoo", "uid": f"uid-{name}", "labels": {"app": "s"},
            "creationTimestamp": "2026-01-01T00:00:00Z"}
    meta.update(extra.pop("meta", {}))
    return {"metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": extra.pop("ports", [])}], **extra},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_slices_split_by_port_mapping_and_keep_terminating_pods_and_hostnames():
    svc = service("s", [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
                  clusterIP="None")
    pods = [pod("a", "10.244.1.5", ports=[{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                hostname="a-0", subdomain="s"),
            pod("b", "10.244.1.6", ports=[{"name": "http", "containerPort": 8081, "protocol": "TCP"}],
                meta={"deletionTimestamp": "2030-01-01T00:00:00Z"})]
    slices = desired_slices(svc, pods)
    assert [s["ports"][0]["port"] for s in slices] == [8080, 8081]
    assert slices[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    (a,), (b,) = slices[0]["endpoints"], slices[1]["endpoints"]
    assert a["hostname"] == "a-0" and a["conditions"] == READY
    assert b["conditions"] == {"ready": False, "serving": True, "terminating": True} and "hostname" not in b


def test_rolling_update_arithmetic_follows_the_deployment_controller():
    assert rolling_limits({"replicas": 10, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}) == (3, 2)
    assert rolling_limits({"replicas": 2, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}) == (0, 1)
    assert new_replicas(replicas=2, surge=1, current_total=2, new_now=0) == 1
    assert new_replicas(replicas=2, surge=1, current_total=3, new_now=1) == 1
    # the new pod is not available: nothing old goes; once it is, one available old pod goes
    assert old_scale_down(2, 0, new=(1, 0), old=[(2, 2)]) == [2]
    assert old_scale_down(2, 0, new=(1, 1), old=[(2, 2)]) == [1]
    # unhealthy old pods go first, even when the new ones are not available
    assert old_scale_down(10, 2, new=(5, 0), old=[(8, 6)]) == [8]
    assert old_scale_down(2, 1, new=(1, 0), old=[(2, 0)]) == [1]
    doomed = pods_to_delete([pod("old", "10.244.1.5"), pod("unready", "10.244.1.6", ready=False)], 1)
    assert [p["metadata"]["name"] for p in doomed] == ["unready"]


def test_pods_are_deleted_gracefully_when_a_kubelet_runs_them():
    store = Store(seed=3)
    store.create("namespaces", {"metadata": {"name": "zoo"}})
    store.create("nodes", {"metadata": {"name": "node-1"}})
    spec = {"containers": [{"name": "c", "image": "x"}]}
    store.create("pods", {"metadata": {"name": "bound"}, "spec": {**spec, "nodeName": "node-1"}}, "zoo")
    store.create("pods", {"metadata": {"name": "orphan"}, "spec": {**spec, "nodeName": "node-9"}}, "zoo")
    store.create("pods", {"metadata": {"name": "pending"}, "spec": spec}, "zoo")
    marked = store.delete("pods", "zoo", "bound")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30 and marked["metadata"]["deletionTimestamp"]
    assert store.get("pods", "zoo", "bound")["metadata"]["deletionTimestamp"]
    assert store.delete("pods", "zoo", "bound", grace_seconds=5)["metadata"]["deletionGracePeriodSeconds"] == 5
    for name in ("orphan", "pending"):  # on no real node, or never scheduled: at once
        store.delete("pods", "zoo", name)
    store.delete("pods", "zoo", "bound", grace_seconds=0)  # what the kubelet does last
    assert [p["metadata"]["name"] for p in store.list("pods", "zoo")] == []


def test_services_are_validated_and_defaulted_as_by_the_api_server():
    store = Store(seed=4)
    store.create("namespaces", {"metadata": {"name": "zoo"}})
    lb = store.create("services", {"metadata": {"name": "lb"}, "spec": {
        "type": "LoadBalancer", "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
        "selector": {"app": "x"}, "ports": [{"port": 80}]}}, "zoo")
    spec = lb["spec"]
    assert spec["allocateLoadBalancerNodePorts"] is True and spec["ports"][0]["nodePort"] in range(30000, 32768)
    assert spec["healthCheckNodePort"] in range(30000, 32768) and lb["status"] == {"loadBalancer": {}}
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    with pytest.raises(ApiError) as bad:
        store.create("services", {"metadata": {"name": "bad"}, "spec": {
            "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Nearby", "ports": [{"port": 80}]}}, "zoo")
    assert bad.value.code == 422 and bad.value.message == (
        'Service "bad" is invalid: [spec.internalTrafficPolicy: Unsupported value: "Nearby": supported values: '
        '"Cluster", "Local", spec.externalTrafficPolicy: Invalid value: "Local": may only be set for '
        'externally-accessible services]')
    with pytest.raises(ApiError) as missing:
        store.create("services", {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName"}}, "zoo")
    assert missing.value.message == 'Service "ext" is invalid: spec.externalName: Required value'


def test_external_name_is_a_cname_chased_inside_the_cluster_domain():
    zone = Zone.from_json({"domain": "cluster.local", "records": {
        "alias.zoo.svc.cluster.local": {"CNAME": ["multi.zoo.svc.cluster.local."]},
        "out.zoo.svc.cluster.local": {"CNAME": ["db.example.com."]},
        "multi.zoo.svc.cluster.local": {"A": ["10.96.0.50"]}}})
    answer = zone.answer(dns.message.make_query("alias.zoo.svc.cluster.local", "A")).answer
    assert [(r.rdtype, str(r[0])) for r in answer] == [(dns.rdatatype.CNAME, "multi.zoo.svc.cluster.local."),
                                                       (dns.rdatatype.A, "10.96.0.50")]
    outside = zone.answer(dns.message.make_query("out.zoo.svc.cluster.local", "A")).answer
    assert [str(r[0]) for r in outside] == ["db.example.com."]


def test_a_shell_less_image_execs_only_its_own_binary():
    distroless = {"image": "gcr.io/distroless/python3-debian12:nonroot", "command": ["python3", "-m", "x"]}
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert not executable(distroless, "sh", path) and not executable(distroless, "cat", path)
    assert executable({**distroless, "command": ["cat"]}, "cat", path)
    assert executable({"image": "python:3.12-slim", "command": ["python3"]}, "sh", path)


# ---- the zoo, with real packets -----------------------------------------------------------------

class Zoo:
    def __init__(self, lab):
        self.lab = lab
        self.v1, self.api_client = lab.api()
        clients = [p for p in lab.pods("zoo", "app=client") if p.status.phase == "Running"]
        self.client = {p.spec.node_name: lab.netns(p) for p in clients}
        self.client_ip = {p.spec.node_name: p.status.pod_ip for p in clients}
        self.fabric = net.fabric_netns(lab.name)

    def ip(self, name, namespace="zoo") -> str:
        return self.v1.read_namespaced_service(name, namespace).spec.cluster_ip

    def pod(self, name, namespace="zoo"):
        return self.v1.read_namespaced_pod(name, namespace)

    def slices(self, service, namespace="zoo") -> list:
        from kubernetes import client

        return client.DiscoveryV1Api(self.api_client).list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}").items

    def node_port(self, service) -> int:
        return self.v1.read_namespaced_service(service, "zoo").spec.ports[0].node_port


def ask(netns: str, ip: str, port: int, timeout: float = 1.0) -> str:
    """The echo server's answer (`<pod> <client ip>:<port>`), or 'refused' / 'timeout'."""
    def go():
        try:
            with socket.create_connection((ip, port), timeout=timeout) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        return data.decode().rsplit("\r\n\r\n", 1)[-1].strip()
    return in_netns(netns, go)


def ask_udp(netns: str, ip: str, port: int, timeout: float = 1.0) -> str:
    def go():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(b"ping", (ip, port))
            try:
                return sock.recvfrom(4096)[0].decode().strip()
            except TimeoutError:
                return "timeout"
    return in_netns(netns, go)


def query(netns: str, name: str, server: str = DNS_IP, tcp: bool = False, rdtype: str = "A"):
    request = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return in_netns(netns, lambda: send(request, server, timeout=2.0))


def addresses(response) -> list[str]:
    return sorted(str(r) for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for r in rrset)


def who(answer: str) -> str:
    return answer.split()[0]


ZOO_NAMESPACES = ("zoo", "zoo-deny", "zoo-baseline")


def frozen_rollout(zoo: Zoo) -> dict | None:
    """The rollout Service's endpoints as {ip: (ready, serving, terminating)} once it froze."""
    endpoints = [e for s in zoo.slices("rollout") for e in s.endpoints or []]
    shape = {e.addresses[0]: (e.conditions.ready, e.conditions.serving, bool(e.conditions.terminating))
             for e in endpoints}
    wanted = sorted([(True, True, False), (True, True, False), (False, True, True), (False, False, False)])
    return shape if sorted(shape.values()) == wanted else None


@pytest.fixture(scope="module")
def zoo():
    lab = start(LabConfig(unique_name("z"), scenario="zoo"))
    try:
        ready = Zoo(lab)
        # A new pod is in its slice (not ready) from when it has an IP, a pass before it runs.
        lab.wait(lambda: frozen_rollout(ready) and all(p.status.phase == "Running" for ns in ZOO_NAMESPACES
                                                      for p in lab.pods(ns)), timeout=20, what="the frozen rollout",
                 show=lambda: [(e.addresses, e.conditions) for s in ready.slices("rollout") for e in s.endpoints or []])
        yield ready
    finally:
        lifecycle.down(lab.name)


@pytest.mark.lab
def test_every_zoo_pod_is_running_and_only_the_expected_ones_are_not_ready(zoo):
    not_ready = set()
    for namespace in ZOO_NAMESPACES:
        for p in zoo.lab.pods(namespace):
            assert p.status.phase == "Running", p.metadata.name
            if not any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []):
                not_ready.add(p.metadata.name.rsplit("-", 2)[0] if p.metadata.owner_references else p.metadata.name)
    assert not_ready == {"peer-1", "rollout"}


@pytest.mark.lab
def test_multi_port_named_target_ports_reach_every_mapping(zoo):
    ports = sorted(tuple(sorted((p.name, p.port) for p in s.ports)) for s in zoo.slices("multi"))
    assert ports == [(("admin", 9090), ("http", 8080)), (("admin", 9091), ("http", 8081))]
    ip, client = zoo.ip("multi"), zoo.client["node-1"]
    seen = {who(ask(client, ip, 80)) for _ in range(30)}
    assert len(seen) == 3 and any(name.startswith("multi-next-") for name in seen), seen
    assert who(ask(client, ip, 9090)).startswith("multi-")


@pytest.mark.lab
def test_tcp_and_udp_on_one_port_answer_dns(zoo):
    ip = zoo.ip("dns")
    for tcp in (False, True):
        assert addresses(query(zoo.client["node-2"], "www.zoo.example", ip, tcp=tcp)) == ["192.0.2.10"]


@pytest.mark.lab
def test_udp_only_service_answers_udp_and_refuses_tcp(zoo):
    ip = zoo.ip("statsd")
    answer = ask_udp(zoo.client["node-1"], ip, 8125)
    assert who(answer).startswith("statsd-") and answer.split()[1].startswith(zoo.client_ip["node-1"] + ":")
    assert ask(zoo.client["node-1"], ip, 8125) == "refused"  # no TCP port on that ClusterIP


@pytest.mark.lab
def test_headless_service_gives_each_pod_a_stable_name(zoo):
    ips = {name: zoo.pod(name).status.pod_ip for name in ("web-0", "web-1")}
    client = zoo.client["node-1"]
    assert addresses(query(client, "web.zoo.svc.cluster.local")) == sorted(ips.values())
    for name, ip in ips.items():
        assert addresses(query(client, f"{name}.web.zoo.svc.cluster.local")) == [ip]
        assert who(ask(client, ip, 8080)) == name


@pytest.mark.lab
def test_selector_less_service_reaches_its_hand_made_slice(zoo):
    assert zoo.pod("legacy").status.pod_ip == "10.244.2.250"
    [manual] = zoo.slices("legacy")
    assert manual.metadata.name == "legacy-manual" and manual.endpoints[0].addresses == ["10.244.2.250"]
    for node in ("node-1", "node-2"):
        assert who(ask(zoo.client[node], zoo.ip("legacy"), 80)) == "legacy"


@pytest.mark.lab
def test_distroless_exec_fails_as_a_missing_binary_through_the_official_client(zoo):
    from kubernetes.stream import stream

    [backend] = zoo.lab.pods("zoo", "app=distroless")
    for command in (["sh", "-c", "cat /proc/net/tcp"], ["cat", "/proc/net/tcp"]):
        ws = stream(zoo.v1.connect_get_namespaced_pod_exec, backend.metadata.name, "zoo", command=command,
                    stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
        ws.run_forever(timeout=5)
        status = json.loads(ws.read_channel(3))
        assert (ws.read_stdout(), ws.read_stderr()) == ("", "")
        assert (status["status"], status["reason"], status["code"]) == ("Failure", "InternalError", 500)
        assert status["message"].startswith("Internal error occurred: error executing command in container")
        assert f'exec: "{command[0]}": executable file not found in $PATH: unknown' in status["message"]
        assert status["details"]["causes"][0]["message"] in status["message"]
    own = stream(zoo.v1.connect_get_namespaced_pod_exec, backend.metadata.name, "zoo",
                 command=["python3", "-c", "print('own binary')"], stdout=True, stderr=True, stdin=False, tty=False)
    assert own == "own binary\n"
    assert who(ask(zoo.client["node-1"], zoo.ip("distroless"), 80)) == backend.metadata.name


@pytest.mark.lab
def test_publish_not_ready_addresses_sends_traffic_to_the_not_ready_peer(zoo):
    conditions = {e.target_ref.name: (e.conditions.ready, e.conditions.serving)
                  for s in zoo.slices("peers") for e in s.endpoints}
    assert conditions == {"peer-0": (True, True), "peer-1": (True, False)}
    seen = {who(ask(zoo.client["node-1"], zoo.ip("peers"), 7000)) for _ in range(20)}
    assert seen == {"peer-0", "peer-1"}


@pytest.mark.lab
def test_session_affinity_sends_a_client_to_one_backend_every_time_even_across_resyncs(zoo):
    ip, client = zoo.ip("sticky"), zoo.client["node-1"]
    first = {who(ask(client, ip, 80)) for _ in range(12)}
    assert len(first) == 1 and len([e for s in zoo.slices("sticky") for e in s.endpoints]) == 2
    from kubernetes import client as k8s  # a new endpoint for another Service: kube-proxy resyncs

    zoo.v1.create_namespaced_pod("zoo", k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="multi-extra", labels={"app": "multi"}),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(
            name="web", image="x", command=["python3", "-m", "netdoctor.lab.echo", "--tcp", "8080"],
            ports=[k8s.V1ContainerPort(name="http", container_port=8080)])])))
    try:
        zoo.lab.wait(lambda: any(e.target_ref.name == "multi-extra" for s in zoo.slices("multi") for e in s.endpoints),
                     what="the new endpoint")
        time.sleep(0.5)
        assert {who(ask(client, ip, 80)) for _ in range(12)} == first
    finally:
        zoo.v1.delete_namespaced_pod("multi-extra", "zoo", grace_period_seconds=0)
    node = net.NodeNet(zoo.lab.name, 1, "vxlan").netns
    sets = run_in(node, "nft", "list", "sets", "table", "ip", "kube-proxy").stdout
    assert zoo.client_ip["node-1"] in sets and "timeout 10m" in sets


@pytest.mark.lab
def test_internal_traffic_policy_local_answers_only_where_the_endpoint_is(zoo):
    ip = zoo.ip("node-agent")
    assert who(ask(zoo.client["node-1"], ip, 80)).startswith("node-agent-")
    assert ask(zoo.client["node-2"], ip, 80) == "timeout"  # dropped by design, not refused


@pytest.mark.lab
def test_external_traffic_policy_local_node_port_answers_on_the_endpoint_node_keeping_the_client_ip(zoo):
    port = zoo.node_port("edge")
    answer = ask(zoo.fabric, "172.30.0.2", port)
    assert who(answer).startswith("edge-") and answer.split()[1].startswith(net.FABRIC_GATEWAY + ":")
    assert ask(zoo.fabric, "172.30.0.1", port) == "timeout"  # no local endpoint: dropped
    assert who(ask(zoo.client["node-1"], "172.30.0.1", port)).startswith("edge-")  # pods short-circuit


@pytest.mark.lab
def test_load_balancer_without_a_load_balancer_works_by_node_port_and_cluster_ip(zoo):
    svc = zoo.v1.read_namespaced_service("gateway", "zoo")
    assert svc.status.load_balancer.ingress is None and svc.spec.allocate_load_balancer_node_ports
    port = svc.spec.ports[0].node_port
    for node_ip in ("172.30.0.1", "172.30.0.2"):
        answer = ask(zoo.fabric, node_ip, port)
        assert who(answer).startswith("multi-") and not answer.split()[1].startswith(net.FABRIC_GATEWAY + ":")
    assert who(ask(zoo.client["node-2"], svc.spec.cluster_ip, 80)).startswith("multi-")


@pytest.mark.lab
def test_external_name_resolves_to_a_cname_and_has_no_endpoints(zoo):
    response = query(zoo.client["node-1"], "alias.zoo.svc.cluster.local")
    cname = [str(r) for rrset in response.answer if rrset.rdtype == dns.rdatatype.CNAME for r in rrset]
    assert cname == ["multi.zoo.svc.cluster.local."] and addresses(response) == [zoo.ip("multi")]
    assert zoo.slices("alias") == []


@pytest.mark.lab
def test_the_port_declared_in_the_second_container_serves(zoo):
    [backend] = zoo.lab.pods("zoo", "app=sidecar")
    assert [c.name for c in backend.spec.containers] == ["log-shipper", "app"]
    assert [(p.name, p.port) for s in zoo.slices("sidecar") for p in s.ports] == [("http", 8080)]
    assert who(ask(zoo.client["node-2"], zoo.ip("sidecar"), 80)) == backend.metadata.name


@pytest.mark.lab
def test_frozen_rollout_serves_from_ready_endpoints_while_the_old_pod_drains(zoo):
    from kubernetes import client as k8s

    shape = frozen_rollout(zoo)
    pods = {p.status.pod_ip: p for p in zoo.lab.pods("zoo", "app=rollout")}
    versions = {ip: pods[ip].metadata.labels["version"] for ip in shape}
    by_state = {state: sorted(versions[ip] for ip in shape if shape[ip] == state) for state in set(shape.values())}
    assert by_state == {(True, True, False): ["v1", "v2"], (False, True, True): ["v1"], (False, False, False): ["v2"]}
    sets = k8s.AppsV1Api(zoo.api_client).list_namespaced_replica_set("zoo", label_selector="app=rollout").items
    assert sorted((rs.metadata.owner_references[0].name, rs.spec.replicas) for rs in sets) == [
        ("rollout", 1), ("rollout", 2)]
    ready = {pods[ip].metadata.name for ip, state in shape.items() if state[0]}
    assert {who(ask(zoo.client["node-1"], zoo.ip("rollout"), 80)) for _ in range(20)} == ready
    draining = next(ip for ip, state in shape.items() if state[2])
    assert who(ask(zoo.client["node-1"], draining, 8080)) == pods[draining].metadata.name  # still serving


@pytest.mark.lab
def test_default_deny_namespace_lets_only_its_allowed_client_through(zoo):
    [deny_client] = zoo.lab.pods("zoo-deny", "app=client")
    [api] = zoo.lab.pods("zoo-deny", "app=api")
    inside, ip = zoo.lab.netns(deny_client), zoo.ip("api", "zoo-deny")
    assert addresses(query(inside, "api.zoo-deny.svc.cluster.local")) == [ip]
    assert who(ask(inside, ip, 80)) == api.metadata.name
    assert ask(zoo.client["node-1"], api.status.pod_ip, 8080, timeout=0.5) == "timeout"  # ingress denied
    assert ask(inside, zoo.ip("multi"), 80, timeout=0.5) == "timeout"  # egress denied


@pytest.mark.lab
def test_baseline_namespace_runs_its_app_and_refuses_capabilities(zoo):
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    [client_pod] = zoo.lab.pods("zoo-baseline", "app=client")
    [app] = zoo.lab.pods("zoo-baseline", "app=app")
    assert who(ask(zoo.lab.netns(client_pod), zoo.ip("app", "zoo-baseline"), 80)) == app.metadata.name
    with pytest.raises(ApiException) as refused:
        zoo.v1.create_namespaced_pod("zoo-baseline", k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name="capture"),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="p", image="netshoot", security_context=k8s.V1SecurityContext(
                capabilities=k8s.V1Capabilities(add=["NET_RAW"])))])))
    message = json.loads(refused.value.body)["message"]
    assert refused.value.status == 403 and 'violates PodSecurity "baseline:latest"' in message
