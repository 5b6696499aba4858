"""A small REST client for a lab's own API server, used by `netdoctor lab apply`.

netdoctor's checks talk to any cluster through the official client (netdoctor/kube.py); the lab
CLI only needs create-or-replace, so it uses the stdlib and starts fast.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from netdoctor.errors import ClusterError

CORE = {"Namespace": ("namespaces", False), "Pod": ("pods", True), "Service": ("services", True),
        "ConfigMap": ("configmaps", True), "Endpoints": ("endpoints", True)}
GROUPS = {"Deployment": ("apps/v1", "deployments"), "ReplicaSet": ("apps/v1", "replicasets"),
          "NetworkPolicy": ("networking.k8s.io/v1", "networkpolicies"),
          "EndpointSlice": ("discovery.k8s.io/v1", "endpointslices")}
# ReplicaSets before Deployments: a Deployment adopts a matching orphan ReplicaSet as its old one.
APPLY_ORDER = ("Namespace", "ConfigMap", "NetworkPolicy", "Service", "Endpoints", "EndpointSlice", "ReplicaSet",
               "Deployment", "Pod")


class LabClient:
    def __init__(self, kubeconfig: Path):
        config = yaml.safe_load(kubeconfig.read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self._server = cluster["server"]
        self._token = user["token"]
        self._ssl = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())

    def apply(self, objects: list[dict]) -> list[str]:
        """Create each object, or replace it when it exists; returns `kind/name created|configured`."""
        unknown = sorted({o["kind"] for o in objects} - set(CORE) - set(GROUPS))
        if unknown:
            raise ClusterError(f"the lab cannot apply kind {', '.join(unknown)}")
        done = []
        for obj in sorted(objects, key=lambda o: APPLY_ORDER.index(o["kind"])):
            done.append(self._apply_one(obj))
        return done

    def _apply_one(self, obj: dict) -> str:
        name = obj["metadata"]["name"]
        collection = self._collection(obj)
        label = f"{obj['kind'].lower()}/{name}"
        status, body = self._request("POST", collection, obj)
        if status == 201 or status == 200:
            return f"{label} created"
        if status != 409:
            raise ClusterError(f"{label}: {body.get('message', status)}")
        _, current = self._request("GET", f"{collection}/{name}")
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        status, body = self._request("PUT", f"{collection}/{name}", obj)
        if status >= 300:
            raise ClusterError(f"{label}: {body.get('message', status)}")
        return f"{label} configured"

    def _collection(self, obj: dict) -> str:
        kind, ns = obj["kind"], obj["metadata"].get("namespace") or "default"
        if kind in CORE:
            plural, namespaced = CORE[kind]
            return f"/api/v1/namespaces/{ns}/{plural}" if namespaced else f"/api/v1/{plural}"
        group_version, plural = GROUPS[kind]
        return f"/apis/{group_version}/namespaces/{ns}/{plural}"

    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self._server + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except (urllib.error.URLError, OSError) as exc:
            raise ClusterError(f"cannot reach the lab API at {self._server}: {getattr(exc, 'reason', exc)}") from None
