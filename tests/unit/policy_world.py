"""API-shaped object builders shared by the policy engine tests."""

from __future__ import annotations

import ipaddress

from netdoctor.policy.engine import FlowVerdict, decide
from netdoctor.policy.matrix import parse_port
from netdoctor.policy.model import External, World, world_from_objects


def namespace(name: str, **labels: str) -> dict:
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(key: str, labels: dict, ip: str | None = None, ports: tuple = ()) -> dict:
    ns, name = key.split("/")
    container_ports = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]
    obj = {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "main", "ports": container_ports}]},
    }
    if ip:
        obj["status"] = {"podIP": ip}
    return obj


def netpol(key: str, spec: dict) -> dict:
    ns, name = key.split("/")
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def base() -> list[dict]:
    """Namespaces a (team=x) and b (team=y); c is only referenced (not declared)."""
    return [
        namespace("a", team="x"),
        namespace("b", team="y"),
        pod("a/web", {"app": "web", "tier": "fe"}, "10.0.0.1", (("http", 80, "TCP"),)),
        pod(
            "a/api",
            {"app": "api", "tier": "be"},
            "10.0.0.2",
            (("http", 8080, "TCP"), ("dns", 53, "UDP"), ("sig", 9000, "SCTP")),
        ),
        pod("b/client", {"app": "client"}, "10.0.1.1"),
        pod("b/web", {"app": "web", "tier": "fe"}, "10.0.1.2"),
        pod("c/job", {"app": "job"}),
    ]


def endpoint(world: World, ref: str):
    return world.pod(ref) or External(ipaddress.ip_address(ref))


def flow(objects: list[dict], source: str, destination: str, port: str = "TCP/80") -> FlowVerdict:
    world = world_from_objects(objects)
    query = parse_port(port)
    dst = endpoint(world, destination)
    number = query.resolve(dst) if isinstance(query.port, str) else query.port
    return decide(world, endpoint(world, source), dst, query.protocol, number)
