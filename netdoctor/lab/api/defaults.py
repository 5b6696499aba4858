"""Server-side defaults and allocations: pod and workload defaults, Service ClusterIPs and NodePorts.

Called by the store under its lock before validation, so every writer (API clients and the lab's
controllers) gets the objects a real API server would store.
"""

from __future__ import annotations

import ipaddress
import random

from netdoctor.lab.api.admission import invalid_value
from netdoctor.lab.api.status import invalid

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/16")
KUBERNETES_SERVICE_IP = "10.96.0.1"
NODE_PORTS = range(30000, 32768)
DEFAULT_AFFINITY_SECONDS = 10800  # sessionAffinityConfig.clientIP.timeoutSeconds: 3 hours
# Dynamic ClusterIPs come from above this offset, leaving the low band for requested IPs (as kube does).
_STATIC_BAND = 256


def pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            _container(container)


def _container(container: dict) -> None:
    image = str(container.get("image") or "")
    tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    container.setdefault("imagePullPolicy", "IfNotPresent" if tagged or "@" in image else "Always")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def pod(obj: dict) -> None:
    pod_spec(obj.setdefault("spec", {}))
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def workload(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    if obj.get("kind") == "Deployment":
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    status = obj.setdefault("status", {})
    if obj.get("kind") == "ReplicaSet":
        status.setdefault("replicas", 0)  # not omitempty in the API: clients require it


def job(obj: dict) -> None:
    """batch/v1 Job defaults (SetDefaults_Job) and the selector the job strategy generates from the
    uid unless spec.manualSelector (the template's job-name and controller-uid labels); a Job
    without labels gets its template's."""
    spec = obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    pod_spec(template.setdefault("spec", {}))
    meta = obj["metadata"]
    if not spec.get("manualSelector"):
        template_labels = template.setdefault("metadata", {}).setdefault("labels", {})
        name = meta.get("name") or ""
        for key, value in (("job-name", name), ("batch.kubernetes.io/job-name", name),
                           ("controller-uid", meta["uid"]), ("batch.kubernetes.io/controller-uid", meta["uid"])):
            template_labels.setdefault(key, value)
        match = spec.setdefault("selector", {}).setdefault("matchLabels", {})
        match.setdefault("batch.kubernetes.io/controller-uid", meta["uid"])
    template_labels = (template.get("metadata") or {}).get("labels")
    if template_labels and not meta.get("labels"):  # as a Job read back from storage is defaulted again
        meta["labels"] = dict(template_labels)
    obj.setdefault("status", {})


def namespace(obj: dict) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {}).setdefault("kubernetes.io/metadata.name", name)


def service(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        client_ip = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        client_ip.setdefault("timeoutSeconds", DEFAULT_AFFINITY_SECONDS)
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def endpoint_slice(obj: dict) -> None:
    for port in obj.get("ports") or []:
        port.setdefault("name", "")
        port.setdefault("protocol", "TCP")


def allocate_service(obj: dict, others: list[dict], rng: random.Random) -> None:
    """Fill spec.clusterIP(s) and nodePorts, keeping requested values when free (422 when not)."""
    spec, name = obj["spec"], obj["metadata"]["name"]
    if spec["type"] == "ExternalName":
        return
    used_ips = {o["spec"].get("clusterIP") for o in others}
    ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
    if ip is None or ip == "":
        ip = _free_ip(used_ips, rng)
    elif ip != "None":
        _check_requested_ip(name, ip, used_ips)
    spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
    used_ports = {p.get("nodePort") for o in others for p in o["spec"].get("ports") or []}
    used_ports |= {o["spec"].get("healthCheckNodePort") for o in others}
    if spec["type"] == "NodePort" or spec["type"] == "LoadBalancer" and spec["allocateLoadBalancerNodePorts"]:
        _allocate_node_ports(name, spec["ports"], used_ports, rng)
    if spec["type"] == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
        spec.setdefault("healthCheckNodePort", _free_port(used_ports, rng))


def _free_ip(used: set, rng: random.Random) -> str:
    hosts = SERVICE_CIDR.num_addresses - 1
    start = rng.randrange(_STATIC_BAND, hosts)
    for offset in range(hosts - _STATIC_BAND):
        candidate = str(SERVICE_CIDR.network_address + _STATIC_BAND + (start - _STATIC_BAND + offset) % (hosts - _STATIC_BAND))
        if candidate not in used:
            return candidate
    raise invalid("Service", "", [invalid_value("spec.clusterIPs", "", "range is full")])


def _check_requested_ip(name: str, ip: str, used: set) -> None:
    shown = f'[]string{{"{ip}"}}'
    try:
        inside = ipaddress.ip_address(ip) in SERVICE_CIDR
    except ValueError:
        inside = False
    if not inside:
        detail = (
            f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
            f"The range of valid IPs is {SERVICE_CIDR}"
        )
    elif ip in used:
        detail = f"failed to allocate IP {ip}: provided IP is already allocated"
    else:
        return
    cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {shown}: {detail}", "field": "spec.clusterIPs"}
    raise invalid("Service", name, [cause])


def _allocate_node_ports(name: str, ports: list[dict], used: set, rng: random.Random) -> None:
    for i, port in enumerate(ports):
        requested = port.get("nodePort")
        if requested is None:
            port["nodePort"] = _free_port(used, rng)
        elif requested not in NODE_PORTS:
            detail = f"provided port is not in the valid range. The range of valid ports is {NODE_PORTS.start}-{NODE_PORTS.stop - 1}"
            raise invalid("Service", name, [invalid_value(f"spec.ports[{i}].nodePort", requested, detail)])
        elif requested in used:
            raise invalid("Service", name, [invalid_value(f"spec.ports[{i}].nodePort", requested, "provided port is already allocated")])
        used.add(port["nodePort"])


def _free_port(used: set, rng: random.Random) -> int:
    start = rng.randrange(len(NODE_PORTS))
    for offset in range(len(NODE_PORTS)):
        candidate = NODE_PORTS[(start + offset) % len(NODE_PORTS)]
        if candidate not in used:
            return candidate
    raise invalid("Service", "", [invalid_value("spec.ports", "", "node port range is full")])
