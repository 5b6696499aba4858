"""Validation (422 Invalid) and PodSecurity enforcement (403) for objects written to the store.

The store calls `validate()` on every create/replace and `check_pod_security()` on pod creation
and ephemeral-container updates, so controllers and API clients get the same answers a real API
server gives. Messages and cause shapes copy the real ones.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

from netdoctor import labels
from netdoctor.lab.api.resources import ResourceType
from netdoctor.lab.api.status import ApiError, invalid

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
RESTART_POLICIES = ("Always", "OnFailure", "Never")
JOB_RESTART_POLICIES = ("OnFailure", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
MAX_AFFINITY_SECONDS = 86400
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
IANA_SVC_NAME_MSG = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"


def _quote(value) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"' if isinstance(value, str) else str(value)


def invalid_value(field: str, value, detail: str) -> dict:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {_quote(value)}: {detail}", "field": field}


def required(field: str, detail: str = "") -> dict:
    return {"reason": "FieldValueRequired", "message": "Required value" + (f": {detail}" if detail else ""), "field": field}


def not_supported(field: str, value, supported: tuple[str, ...]) -> dict:
    choices = ", ".join(_quote(s) for s in supported)
    return {
        "reason": "FieldValueNotSupported",
        "message": f"Unsupported value: {_quote(value)}: supported values: {choices}",
        "field": field,
    }


def duplicate(field: str, value) -> dict:
    return {"reason": "FieldValueDuplicate", "message": f"Duplicate value: {_quote(value)}", "field": field}


# --- structural validation -------------------------------------------------------------------


def validate(rtype: ResourceType, obj: dict) -> None:
    """Raise ApiError 422 listing every problem, as the real API server does."""
    name = (obj.get("metadata") or {}).get("name") or ""
    causes = list(_name_causes(rtype, name)) + list(_VALIDATORS.get(rtype.plural, _no_causes)(obj))
    if causes:
        raise invalid(rtype.kind, name, causes, rtype.group)


def _no_causes(_obj: dict) -> Iterator[dict]:
    return iter(())


def _name_causes(rtype: ResourceType, name: str) -> Iterator[dict]:
    if not name:
        yield required("metadata.name", "name or generateName is required")
        return
    pattern, msg, limit = {
        "namespaces": (_LABEL, LABEL_MSG, 63),
        "services": (_DNS1035, DNS1035_MSG, 63),
    }.get(rtype.plural, (_SUBDOMAIN, SUBDOMAIN_MSG, 253))
    if len(name) > limit:
        yield invalid_value("metadata.name", name, f"must be no more than {limit} characters")
    if not pattern.match(name):
        yield invalid_value("metadata.name", name, msg)


def _selector_causes(spec: dict) -> Iterator[dict]:
    """A workload's selector: required, and it must select its own template."""
    selector = spec.get("selector")
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        yield required("spec.selector")
    elif not labels.from_label_selector(selector).matches(template_labels):
        shown = "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(template_labels.items())) + "}"
        yield {
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {shown}: `selector` does not match template `labels`",
            "field": "spec.template.metadata.labels",
        }


def _pod_causes(pod: dict) -> Iterator[dict]:
    yield from pod_spec_causes(pod.get("spec") or {}, "spec")


def pod_spec_causes(spec: dict, prefix: str) -> Iterator[dict]:
    """Problems in a PodSpec; `prefix` is its field path (`spec`, `spec.template.spec`)."""
    containers = spec.get("containers") or []
    if not containers:
        yield required(f"{prefix}.containers")
    seen: set[str] = set()
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(spec.get(key) or []):
            yield from _container_causes(container, f"{prefix}.{key}[{i}]", seen)
    policy = spec.get("restartPolicy", "Always")
    if policy not in RESTART_POLICIES:
        yield not_supported(f"{prefix}.restartPolicy", policy, RESTART_POLICIES)
    for key in ("hostname", "subdomain"):
        if spec.get(key) and not _LABEL.match(str(spec[key])):
            yield invalid_value(f"{prefix}.{key}", spec[key], LABEL_MSG)


def _container_causes(container: dict, path: str, seen: set[str]) -> Iterator[dict]:
    name = container.get("name")
    if not name:
        yield required(f"{path}.name")
    elif name in seen:
        yield duplicate(f"{path}.name", name)
    elif not _LABEL.match(name):
        yield invalid_value(f"{path}.name", name, LABEL_MSG)
    seen.add(name)
    if not container.get("image"):
        yield required(f"{path}.image")
    for j, port in enumerate(container.get("ports") or []):
        yield from _port_causes(port, f"{path}.ports[{j}]", "containerPort")


def _port_causes(port: dict, path: str, key: str) -> Iterator[dict]:
    number = port.get(key)
    if number is None:
        yield required(f"{path}.{key}")
    elif not isinstance(number, int) or not 1 <= number <= 65535:
        yield invalid_value(f"{path}.{key}", number, "must be between 1 and 65535, inclusive")
    protocol = port.get("protocol", "TCP")
    if protocol not in PROTOCOLS:
        yield not_supported(f"{path}.protocol", protocol, PROTOCOLS)


def _service_causes(svc: dict) -> Iterator[dict]:
    spec = svc.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind not in SERVICE_TYPES:
        yield not_supported("spec.type", kind, SERVICE_TYPES)
    ports = spec.get("ports") or []
    if not ports and spec.get("clusterIP") != "None" and kind != "ExternalName":
        yield required("spec.ports")
    names: set[str] = set()
    for i, port in enumerate(ports):
        yield from _port_causes(port, f"spec.ports[{i}]", "port")
        if len(ports) > 1 and not port.get("name"):
            yield required(f"spec.ports[{i}].name")
        elif port.get("name") in names:
            yield duplicate(f"spec.ports[{i}].name", port["name"])
        names.add(port.get("name"))
        target = port.get("targetPort")
        if isinstance(target, int) and not 1 <= target <= 65535:
            yield invalid_value(f"spec.ports[{i}].targetPort", target, "must be between 1 and 65535, inclusive")
        elif isinstance(target, str) and not target.isdigit() and (len(target) > 15 or not _IANA_SVC_NAME.match(target)):
            yield invalid_value(f"spec.ports[{i}].targetPort", target, IANA_SVC_NAME_MSG)
    yield from _service_type_causes(spec, kind)
    yield from _traffic_causes(spec, kind)


def _service_type_causes(spec: dict, kind: str) -> Iterator[dict]:
    """ExternalName needs a name and no ClusterIP; a headless Service can't be a node port."""
    if kind == "ExternalName":
        name = spec.get("externalName")
        if not name:
            yield required("spec.externalName")
        elif not _SUBDOMAIN.match(str(name).rstrip(".")):
            yield invalid_value("spec.externalName", name, SUBDOMAIN_MSG)
        if spec.get("clusterIP") not in (None, ""):
            yield {"reason": "FieldValueForbidden", "field": "spec.clusterIPs",
                   "message": "Forbidden: may not be set for ExternalName services"}
    elif kind in ("NodePort", "LoadBalancer") and spec.get("clusterIP") == "None":
        yield invalid_value("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {kind} services")


def _traffic_causes(spec: dict, kind: str) -> Iterator[dict]:
    """sessionAffinity and its timeout, internal and external traffic policies."""
    affinity = spec.get("sessionAffinity", "None")
    if affinity not in AFFINITIES:
        yield not_supported("spec.sessionAffinity", affinity, AFFINITIES)
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    if timeout is not None and (not isinstance(timeout, int) or not 0 < timeout <= MAX_AFFINITY_SECONDS):
        yield invalid_value("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                            f"must be greater than 0 and less than {MAX_AFFINITY_SECONDS}")
    internal = spec.get("internalTrafficPolicy")
    if internal is not None and internal not in TRAFFIC_POLICIES:
        yield not_supported("spec.internalTrafficPolicy", internal, TRAFFIC_POLICIES)
    external = spec.get("externalTrafficPolicy")
    if external is None:
        return
    if kind not in ("NodePort", "LoadBalancer"):
        yield invalid_value("spec.externalTrafficPolicy", external, "may only be set for externally-accessible services")
    elif external not in TRAFFIC_POLICIES:
        yield not_supported("spec.externalTrafficPolicy", external, TRAFFIC_POLICIES)


def _endpoint_slice_causes(sl: dict) -> Iterator[dict]:
    """A hand-made EndpointSlice (a Service without selector): address type, one address each, ports."""
    kind = sl.get("addressType")
    if kind is None:
        yield required("addressType")
    elif kind not in ADDRESS_TYPES:
        yield not_supported("addressType", kind, ADDRESS_TYPES)
    for i, endpoint in enumerate(sl.get("endpoints") or []):
        addresses = endpoint.get("addresses") or []
        if not addresses:
            yield required(f"endpoints[{i}].addresses", "must contain at least 1 address")
        elif len(addresses) > 1:
            yield {"reason": "FieldValueTooMany", "field": f"endpoints[{i}].addresses",
                   "message": f"Too many: {len(addresses)}: must have at most 1 items"}
        for j, address in enumerate(addresses):
            if kind == "IPv4" and not _is_ipv4(address):
                yield invalid_value(f"endpoints[{i}].addresses[{j}]", address, "must be a valid IPv4 address")
    for i, port in enumerate(sl.get("ports") or []):
        if port.get("name") and not _LABEL.match(port["name"]):
            yield invalid_value(f"ports[{i}].name", port["name"], LABEL_MSG)
        if port.get("port") is not None:
            yield from _port_causes(port, f"ports[{i}]", "port")
        elif port.get("protocol", "TCP") not in PROTOCOLS:
            yield not_supported(f"ports[{i}].protocol", port["protocol"], PROTOCOLS)


def _is_ipv4(text) -> bool:
    try:
        return isinstance(ipaddress.ip_address(str(text)), ipaddress.IPv4Address)
    except ValueError:
        return False


def _workload_causes(obj: dict) -> Iterator[dict]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    yield from _selector_causes(spec)
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        yield invalid_value("spec.replicas", replicas, "must be greater than or equal to 0")
    yield from pod_spec_causes(template.get("spec") or {}, "spec.template.spec")


def _job_causes(job: dict) -> Iterator[dict]:
    spec = job.get("spec") or {}
    yield from _selector_causes(spec)
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            yield invalid_value(f"spec.{key}", value, "must be greater than or equal to 0")
    template_spec = (spec.get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") not in JOB_RESTART_POLICIES:
        yield not_supported("spec.template.spec.restartPolicy", template_spec.get("restartPolicy"), JOB_RESTART_POLICIES)
    yield from pod_spec_causes(template_spec, "spec.template.spec")


_VALIDATORS: dict[str, Callable[[dict], Iterator[dict]]] = {
    "pods": _pod_causes,
    "services": _service_causes,
    "deployments": _workload_causes,
    "replicasets": _workload_causes,
    "endpointslices": _endpoint_slice_causes,
    "jobs": _job_causes,
}


# --- PodSecurity -----------------------------------------------------------------------------

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"
DEFAULT_CAPABILITIES = frozenset(
    "AUDIT_WRITE CHOWN DAC_OVERRIDE FOWNER FSETID KILL MKNOD NET_BIND_SERVICE SETFCAP SETGID SETPCAP SETUID "
    "SYS_CHROOT".split()
)
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


def check_pod_security(pod: dict, namespace: dict) -> None:
    """Raise ApiError 403 when the namespace's enforce level forbids this pod."""
    ns_labels = (namespace.get("metadata") or {}).get("labels") or {}
    level = ns_labels.get(ENFORCE_LABEL, "privileged")
    if level == "privileged":
        return
    level = level if level == "baseline" else "restricted"
    spec = pod.get("spec") or {}
    checks = _BASELINE_CHECKS if level == "baseline" else _RESTRICTED_CHECKS
    failures = [f for f in (check(spec) for check in checks) if f]
    if failures:
        version = ns_labels.get(ENFORCE_VERSION_LABEL, "latest")
        name = (pod.get("metadata") or {}).get("name", "")
        raise ApiError(
            403,
            f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": ' + ", ".join(failures),
            details={"name": name, "kind": "pods"},
        )


def _containers(spec: dict) -> list[dict]:
    return [c for key in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(key) or []]


def _sc(container: dict) -> dict:
    return container.get("securityContext") or {}


def _names(noun: str, names: list[str]) -> str:
    return f"{noun if len(names) == 1 else noun + 's'} " + ", ".join(_quote(n) for n in names)


def _capabilities_baseline(spec: dict) -> str | None:
    bad, caps = [], set()
    for c in _containers(spec):
        added = set((_sc(c).get("capabilities") or {}).get("add") or []) - DEFAULT_CAPABILITIES
        if added:
            bad.append(c.get("name", ""))
            caps |= added
    if not bad:
        return None
    quoted = ", ".join(_quote(x) for x in sorted(caps))
    return f"non-default capabilities ({_names('container', bad)} must not include {quoted} in securityContext.capabilities.add)"


def _capabilities_restricted(spec: dict) -> str | None:
    no_drop, adding, caps = [], [], set()
    for c in _containers(spec):
        capabilities = _sc(c).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            no_drop.append(c.get("name", ""))
        added = set(capabilities.get("add") or []) - RESTRICTED_CAPABILITIES
        if added:
            adding.append(c.get("name", ""))
            caps |= added
    details = []
    if no_drop:
        details.append(f'{_names("container", no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        quoted = ", ".join(_quote(x) for x in sorted(caps))
        details.append(f"{_names('container', adding)} must not include {quoted} in securityContext.capabilities.add")
    return f"unrestricted capabilities ({'; '.join(details)})" if details else None


def _host_namespaces(spec: dict) -> str | None:
    used = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    return f"host namespaces ({', '.join(used)})" if used else None


def _host_path_volumes(spec: dict) -> str | None:
    bad = [v.get("name", "") for v in spec.get("volumes") or [] if "hostPath" in v]
    return f"hostPath volumes ({_names('volume', bad)})" if bad else None


def _restricted_volumes(spec: dict) -> str | None:
    allowed = {"name", "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
    bad = [(v.get("name", ""), k) for v in spec.get("volumes") or [] for k in v if k not in allowed]
    if not bad:
        return None
    names = [n for n, _ in bad]
    kinds = ", ".join(_quote(k) for k in sorted({k for _, k in bad}))
    verb = "uses restricted volume type" if len(bad) == 1 else "use restricted volume types"
    return f"restricted volume types ({_names('volume', names)} {verb} {kinds})"


def _host_ports(spec: dict) -> str | None:
    bad, ports = [], []
    for c in _containers(spec):
        used = [str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")]
        if used:
            bad.append(c.get("name", ""))
            ports += used
    if not bad:
        return None
    verb = "uses hostPort" if len(ports) == 1 else "use hostPorts"
    return f"hostPort ({_names('container', bad)} {verb} {', '.join(ports)})"


def _privileged(spec: dict) -> str | None:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("privileged")]
    return f"privileged ({_names('container', bad)} must not set securityContext.privileged=true)" if bad else None


def _allow_privilege_escalation(spec: dict) -> str | None:
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if not bad:
        return None
    return f"allowPrivilegeEscalation != false ({_names('container', bad)} must set securityContext.allowPrivilegeEscalation=false)"


def _run_as_non_root(spec: dict) -> str | None:
    pod_value = (spec.get("securityContext") or {}).get("runAsNonRoot")
    explicit_false = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsNonRoot") is False]
    implicit = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsNonRoot") is None]
    details = []
    if pod_value is False:
        details.append("pod must not set securityContext.runAsNonRoot=false")
    if explicit_false:
        details.append(f"{_names('container', explicit_false)} must not set securityContext.runAsNonRoot=false")
    if pod_value is None and implicit:
        details.append(f"pod or {_names('container', implicit)} must set securityContext.runAsNonRoot=true")
    return f"runAsNonRoot != true ({'; '.join(details)})" if details else None


def _run_as_user(spec: dict) -> str | None:
    pod_root = (spec.get("securityContext") or {}).get("runAsUser") == 0
    bad = [c.get("name", "") for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    details = (["pod must not set runAsUser=0"] if pod_root else []) + (
        [f"{_names('container', bad)} must not set runAsUser=0"] if bad else []
    )
    return f"runAsUser=0 ({'; '.join(details)})" if details else None


def _seccomp_baseline(spec: dict) -> str | None:
    pod_type = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    bad = [c.get("name", "") for c in _containers(spec) if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    details = (['pod must not set securityContext.seccompProfile.type to "Unconfined"'] if pod_type == "Unconfined" else []) + (
        [f'{_names("container", bad)} must not set securityContext.seccompProfile.type to "Unconfined"'] if bad else []
    )
    return f"seccompProfile ({'; '.join(details)})" if details else None


def _seccomp_restricted(spec: dict) -> str | None:
    good = ("RuntimeDefault", "Localhost")
    pod_type = ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    explicit_bad, unset = [], []
    for c in _containers(spec):
        kind = (_sc(c).get("seccompProfile") or {}).get("type")
        if kind is None:
            unset.append(c.get("name", ""))
        elif kind not in good:
            explicit_bad.append((c.get("name", ""), kind))
    details = []
    if pod_type is not None and pod_type not in good:
        details.append(f"pod must not set securityContext.seccompProfile.type to {_quote(pod_type)}")
    for name, kind in explicit_bad:
        details.append(f"container {_quote(name)} must not set securityContext.seccompProfile.type to {_quote(kind)}")
    if pod_type is None and unset:
        details.append(
            f'pod or {_names("container", unset)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
        )
    return f"seccompProfile ({'; '.join(details)})" if details else None


# In check-ID order, which is the order the real admission plugin reports them in.
_BASELINE_CHECKS = (
    _capabilities_baseline,
    _host_namespaces,
    _host_path_volumes,
    _host_ports,
    _privileged,
    _seccomp_baseline,
)
_RESTRICTED_CHECKS = (
    _allow_privilege_escalation,
    _capabilities_restricted,
    _host_namespaces,
    _host_ports,
    _privileged,
    _restricted_volumes,
    _run_as_non_root,
    _run_as_user,
    _seccomp_restricted,
)
