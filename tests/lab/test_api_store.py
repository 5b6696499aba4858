"""The lab API's object store, patches and admission, without the HTTP layer."""

from __future__ import annotations

import pytest

from netdoctor.lab.api.status import ApiError
from netdoctor.lab.api.store import Store


def pod(name, owner=None, **spec):
    meta = {"name": name, "labels": {"app": name}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
                                    "uid": owner["metadata"]["uid"]}]
    return {"metadata": meta, "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


@pytest.fixture
def store():
    s = Store(seed=1)
    s.create("namespaces", {"metadata": {"name": "demo"}})
    return s


def names(store, resource, namespace="demo"):
    return [o["metadata"]["name"] for o in store.list(resource, namespace)]


def test_create_assigns_metadata_and_returns_copies(store):
    created = store.create("pods", {"metadata": {"generateName": "probe-"}, "spec": pod("x")["spec"]}, "demo")
    meta = created["metadata"]
    assert meta["name"].startswith("probe-") and len(meta["name"]) == len("probe-") + 5
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert (created["apiVersion"], created["kind"], created["status"]["phase"]) == ("v1", "Pod", "Pending")
    created["metadata"]["labels"] = {"mutated": "yes"}
    assert "labels" not in store.get("pods", "demo", meta["name"])["metadata"]
    assert store.create("pods", pod("dry"), "demo", dry_run=True)["metadata"]["name"] == "dry"
    assert "dry" not in names(store, "pods")


def test_background_foreground_and_orphan_propagation(store):
    for policy, survivors in (("Background", []), ("Foreground", []), ("Orphan", ["p-orphan"])):
        tag = policy.lower()
        owner = store.create("configmaps", {"metadata": {"name": f"o-{tag}"}}, "demo")
        child = store.create("configmaps", {"metadata": {"name": f"c-{tag}", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]}}, "demo")
        store.create("pods", pod(f"p-{tag}", owner=child if policy != "Orphan" else owner), "demo")
        store.delete("configmaps", "demo", f"o-{tag}", propagation=policy)
        assert [n for n in names(store, "pods") if n.endswith(tag)] == survivors
    assert "ownerReferences" not in store.get("pods", "demo", "p-orphan")["metadata"]


def test_deleting_a_namespace_deletes_its_contents_and_notifies(store):
    events = []
    store.subscribe(lambda kind, resource, obj: events.append((kind, resource, obj["metadata"]["name"])))
    store.create("pods", pod("a"), "demo")
    store.delete("namespaces", None, "demo")
    assert names(store, "pods", None) == []
    assert ("DELETED", "pods", "a") in events and events[-1][0] == "DELETED"
    with pytest.raises(ApiError) as err:
        store.create("pods", pod("b"), "demo")
    assert (err.value.code, err.value.message) == (404, 'namespaces "demo" not found')


def test_subscribers_may_write_back_and_see_events_in_order(store):
    versions = []

    def controller(kind, resource, obj):
        versions.append(int(obj["metadata"]["resourceVersion"]))
        if resource == "pods" and kind == "ADDED":
            store.update_status("pods", "demo", obj["metadata"]["name"], {"phase": "Running"})

    store.subscribe(controller)
    store.create("pods", pod("a"), "demo")
    assert store.get("pods", "demo", "a")["status"] == {"phase": "Running"}
    assert versions == sorted(versions) and len(versions) == 2


def test_replace_conflicts_on_stale_resource_version(store):
    first = store.create("configmaps", {"metadata": {"name": "c"}, "data": {"a": "1"}}, "demo")
    store.patch("configmaps", "demo", "c", {"data": {"a": "2"}}, "application/merge-patch+json")
    with pytest.raises(ApiError) as err:
        store.replace("configmaps", "demo", "c", first)
    assert (err.value.code, err.value.reason) == (409, "Conflict")


def test_patch_types(store):
    store.create("pods", pod("p"), "demo")
    sidecar = {"spec": {"containers": [{"name": "side", "image": "x"}, {"name": "c", "image": "busybox:2"}]}}
    merged = store.patch("pods", "demo", "p", sidecar, "application/strategic-merge-patch+json")
    assert [(c["name"], c["image"]) for c in merged["spec"]["containers"]] == [("c", "busybox:2"), ("side", "x")]
    assert merged["metadata"]["generation"] == 2
    ops = [{"op": "add", "path": "/metadata/labels/x", "value": "1"}, {"op": "test", "path": "/metadata/labels/x", "value": "1"}]
    assert store.patch("pods", "demo", "p", ops, "application/json-patch+json")["metadata"]["labels"]["x"] == "1"
    with pytest.raises(ApiError) as err:
        store.patch("pods", "demo", "p", [{"op": "replace", "path": "/nope/x", "value": 1}], "application/json-patch+json")
    assert err.value.code == 422


def test_selectors(store):
    store.create("pods", pod("a", nodeName="n1"), "demo")
    store.create("pods", pod("b", nodeName="n2"), "demo")
    assert [p["metadata"]["name"] for p in store.list("pods", field_selector="spec.nodeName!=n1,status.phase=Pending")] == ["b"]
    assert [p["metadata"]["name"] for p in store.list("pods", "demo", label_selector="app in (a,c)")] == ["a"]
    with pytest.raises(ApiError) as err:
        store.list("pods", field_selector="spec.bogus=1")
    assert (err.value.code, err.value.message) == (400, "field label not supported: spec.bogus")


def test_validation_causes(store):
    bad = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Sometimes", "containers": [
        {"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}, {"name": "c"}]}}
    with pytest.raises(ApiError) as err:
        store.create("pods", bad, "demo")
    assert [c["field"] for c in err.value.details["causes"]] == [
        "spec.containers[0].ports[0].containerPort", "spec.containers[1].name", "spec.containers[1].image", "spec.restartPolicy"]
    assert err.value.details["causes"][3]["message"] == (
        'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"')


def test_restricted_pod_security_message(store):
    store.create("namespaces", {"metadata": {"name": "r", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    with pytest.raises(ApiError) as err:
        store.create("pods", pod("p", hostNetwork=True), "r")
    assert err.value.code == 403
    assert err.value.message == (
        'pods "p" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
        '(container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities '
        '(container "c" must set securityContext.capabilities.drop=["ALL"]), host namespaces (hostNetwork=true), '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile '
        '(pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')
    ok = pod("ok", securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}})
    ok["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert store.create("pods", ok, "r")["metadata"]["name"] == "ok"


def test_service_allocation_survives_updates(store):
    svc = store.create("services", {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}, "demo")
    replaced = store.replace("services", "demo", "s", {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    assert (replaced["spec"]["clusterIP"], replaced["spec"]["ports"][0]["nodePort"]) == (svc["spec"]["clusterIP"], 30080)
    with pytest.raises(ApiError) as err:
        store.create("services", {"metadata": {"name": "t"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}, "demo")
    assert err.value.details["causes"][0]["message"] == "Invalid value: 30080: provided port is already allocated"
