"""The lab API server's big-cluster side, through the official client and our wrapper of it:
metadata-only lists and gets (PartialObjectMetadata, asked for in the Accept header), pagination
(limit, continue tokens that keep the list at its resourceVersion, remainingItemCount, 410 Expired
and the wrapper's one full list after it), and ghost objects (served, read-only, unseen by the
controllers), with a check's resolve and plan on a ghost-filled store."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from netdoctor.check import plan, resolve
from netdoctor.check.target import parse_target
from netdoctor.cluster import kube as kube_module
from netdoctor.cluster.kube import Kube
from netdoctor.lab import ghosts
from netdoctor.lab.api import auth, kubeconfig, pki
from netdoctor.lab.api.server import ApiServer
from netdoctor.lab.api.store import Store
from netdoctor.model import CaptureMode

LAB = "paging"


class NoRuntime:
    def exec(self, *args):
        raise AssertionError("no exec here")

    def log_path(self, *args):
        return None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paging")
    store = Store(seed=3)
    tls = pki.generate(tmp / "pki")
    tokens = auth.new_tokens()
    server = ApiServer(store, NoRuntime(), tls, tokens)
    path = kubeconfig.write(tmp / "kubeconfig", LAB, server.start(), tls, tokens)
    store.create("namespaces", {"metadata": {"name": "demo", "labels": {"team": "shop"}}})
    for i in range(7):
        store.create("pods", {"metadata": {"name": f"web-{i}", "namespace": "demo", "labels": {"app": "web"},
                                           "annotations": {"big": "x" * 2000}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
    yield store, str(path)
    server.stop()


@pytest.fixture()
def core(lab):
    return client.CoreV1Api(config.new_client_from_config(config_file=lab[1], context=LAB))


def test_pages_through_the_official_client_with_remaining_counts(core):
    first = core.list_namespaced_pod("demo", limit=3)
    assert [p.metadata.name for p in first.items] == ["web-0", "web-1", "web-2"]
    assert first.metadata.remaining_item_count == 4 and first.metadata._continue
    second = core.list_namespaced_pod("demo", limit=3, _continue=first.metadata._continue)
    last = core.list_namespaced_pod("demo", limit=3, _continue=second.metadata._continue)
    assert [p.metadata.name for p in second.items + last.items] == [f"web-{i}" for i in range(3, 7)]
    assert last.metadata._continue is None and last.metadata.remaining_item_count is None
    assert first.metadata.resource_version == second.metadata.resource_version == last.metadata.resource_version


def test_a_continued_list_shows_the_objects_as_they_were_at_its_resource_version(lab, core):
    store = lab[0]
    first = core.list_namespaced_pod("demo", limit=2)
    store.update_status("pods", "demo", "web-5", {"phase": "Failed"})
    store.create("pods", {"metadata": {"name": "web-9", "namespace": "demo"},
                          "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
    rest = core.list_namespaced_pod("demo", limit=100, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == [f"web-{i}" for i in range(2, 7)]  # no web-9
    assert next(p for p in rest.items if p.metadata.name == "web-5").status.phase != "Failed"
    assert [p.metadata.name for p in core.list_namespaced_pod("demo").items][-1] == "web-9"
    store.delete("pods", "demo", "web-9", grace_seconds=0)
    store.update_status("pods", "demo", "web-5", {})


def test_metadata_only_lists_and_gets(lab):
    kube = Kube.connect(lab[1])
    full = kube.list_objects("Pod", "demo")
    meta = kube.list_metadata("Pod", "demo")
    assert [o["metadata"]["name"] for o in meta] == [o["metadata"]["name"] for o in full]
    assert all(set(o) == {"kind", "apiVersion", "metadata"} for o in meta)
    assert meta[0]["metadata"]["labels"] == {"app": "web"}
    before = kube.bytes_read
    kube.get_metadata("Namespace", None, "demo")
    assert kube.get_metadata("Namespace", None, "demo")["metadata"]["labels"]["team"] == "shop"
    assert kube.bytes_read - before < 1000


def raw_get(api, path, accept, query=()):
    """A GET through the official client with our own Accept header: (status, JSON body)."""
    method, url, headers, body, post = api.param_serialize("GET", path, query_params=list(query),
                                                           header_params={"Accept": accept},
                                                           auth_settings=["BearerToken"])
    try:
        response = api.call_api(method, url, header_params=headers)
    except ApiException as exc:
        return exc.status, json.loads(exc.body)
    response.read()
    return response.status, json.loads(response.data)


def test_the_server_answers_the_metadata_kinds_a_real_one_does(core):
    api = core.api_client
    status, answer = raw_get(api, "/api/v1/namespaces/demo/pods",
                             "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
                             [("limit", "2")])
    assert status == 200
    assert answer["kind"] == "PartialObjectMetadataList" and answer["apiVersion"] == "meta.k8s.io/v1"
    assert answer["items"][0]["kind"] == "PartialObjectMetadata" and "spec" not in answer["items"][0]
    assert answer["metadata"]["remainingItemCount"] == 5
    status, _ = raw_get(api, "/api/v1/namespaces/demo/pods", "application/json;as=Table;g=meta.k8s.io;v=v1")
    assert status == 406


def test_an_expired_continue_token_is_410_and_the_wrapper_lists_once_more(tmp_path, monkeypatch):
    store = Store(page_seconds=0.2)
    tls, tokens = pki.generate(tmp_path / "pki"), auth.new_tokens()
    server = ApiServer(store, NoRuntime(), tls, tokens)
    path = str(kubeconfig.write(tmp_path / "kubeconfig", LAB, server.start(), tls, tokens))
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=path, context=LAB))
        first = core.list_namespace(limit=1)
        time.sleep(0.3)
        with pytest.raises(ApiException) as gone:
            core.list_namespace(limit=1, _continue=first.metadata._continue)
        assert gone.value.status == 410 and '"reason":"Expired"' in gone.value.body.replace(" ", "")
        kube = Kube.connect(path)
        monkeypatch.setattr(kube_module, "PAGE", 1)
        calls = []
        real = kube._request

        def slow(*args, **kwargs):
            calls.append(dict(kwargs.get("query") or []))
            if len(calls) == 2:
                time.sleep(0.3)
            return real(*args, **kwargs)

        monkeypatch.setattr(kube, "_request", slow)
        names = [o["metadata"]["name"] for o in kube.list_objects("Namespace")]
        assert names == sorted(n for n in ("default", "kube-system", "kube-public", "kube-node-lease"))
        assert "limit" not in calls[-1]  # after the 410: one list without limit
    finally:
        server.stop()


def test_ghosts_are_served_read_only_and_the_controllers_never_see_them(tmp_path):
    store = Store()
    added = ghosts.load(store, nodes=300, pods=2500, policies=120)
    assert added == 3 + 300 + 2500 + 120
    tls, tokens = pki.generate(tmp_path / "pki"), auth.new_tokens()
    server = ApiServer(store, NoRuntime(), tls, tokens)
    path = str(kubeconfig.write(tmp_path / "kubeconfig", LAB, server.start(), tls, tokens))
    try:
        kube = Kube.connect(path)
        assert len(kube.list_objects("Pod")) == 2500  # five pages of 500
        assert len(kube.list_metadata("NetworkPolicy", "ghost-01")) == 40
        node = kube.node("ghost-00007")
        assert node.ready and node.taints[0].key == "virtual-kubelet.io/provider"
        assert node.label_map["type"] == "virtual-kubelet"
        assert kube.nodes("type!=virtual-kubelet") == []
        assert store.list("pods") == [] and store.list("nodes") == []
        core = client.CoreV1Api(config.new_client_from_config(config_file=path, context=LAB))
        with pytest.raises(ApiException) as refused:
            core.delete_node("ghost-00007")
        assert refused.value.status == 405
    finally:
        server.stop()


def test_a_check_on_a_ghost_filled_cluster_reads_and_plans_as_on_a_small_one(tmp_path):
    def resolve_and_plan(store_ghosts):
        store = Store()
        for i in (1, 2, 3):
            store.create("nodes", {"metadata": {"name": f"node-{i}"}, "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": f"172.30.0.{i}"}]}})
        store.create("namespaces", {"metadata": {"name": "shop"}})
        for i in (1, 2):
            store.create("pods", {"metadata": {"name": f"api-{i}", "namespace": "shop", "labels": {"app": "api"}},
                                  "spec": {"nodeName": f"node-{i}", "containers": [
                                      {"name": "api", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]}})
            store.update_status("pods", "shop", f"api-{i}", {"phase": "Running", "podIP": f"10.244.{i}.5",
                                                             "conditions": [{"type": "Ready", "status": "True"}]})
        store.create("services", {"metadata": {"name": "api", "namespace": "shop"}, "spec": {
            "selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
        ghosts.load(store, *store_ghosts)
        tls, tokens = pki.generate(tmp_path / f"pki{store_ghosts[0]}"), auth.new_tokens()
        server = ApiServer(store, NoRuntime(), tls, tokens)
        path = str(kubeconfig.write(tmp_path / f"kubeconfig{store_ghosts[0]}", LAB, server.start(), tls, tokens))
        try:
            kube = Kube.connect(path)
            facts = resolve.resolve(kube, resolve.Request(parse_target("svc/api"), "shop", None, None))
            return plan.build(facts, plan.Options(capture=CaptureMode.AUTO)), kube.bytes_read
        finally:
            server.stop()

    small, small_bytes = resolve_and_plan((0, 0, 0))
    big, big_bytes = resolve_and_plan((5000, 20000, 2000))
    assert len(big.probes) == len(small.probes) <= 8
    assert [s.key for s in big.steps] == [s.key for s in small.steps]
    assert big_bytes < small_bytes * 1.5
