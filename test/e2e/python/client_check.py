"""Drives a Petrel API server with the official Python client (Debian's
python3-kubernetes): create, list with selectors, watch, patch, delete.
Exits non-zero with a message on the first thing that is not as Kubernetes
would answer. Usage: client_check.py KUBECONFIG"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        sys.exit(1)


def main():
    config.load_kube_config(config_file=sys.argv[1])
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    ns = "pyclient"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

    for i in range(5):
        core.create_namespaced_config_map(ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="cm-%d" % i, labels={"parity": "even" if i % 2 == 0 else "odd"}),
            data={"i": str(i)}))
    evens = core.list_namespaced_config_map(ns, label_selector="parity=even")
    check(sorted(c.metadata.name for c in evens.items) == ["cm-0", "cm-2", "cm-4"], "label selector: %s" % [c.metadata.name for c in evens.items])
    named = core.list_namespaced_config_map(ns, field_selector="metadata.name=cm-3")
    check([c.metadata.name for c in named.items] == ["cm-3"], "field selector")

    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="petrel.local/testserver:1")]))))
    created = apps.create_namespaced_deployment(ns, dep)
    check(created.spec.strategy.type == "RollingUpdate", "deployment defaults")

    # Watch from the list's resourceVersion while another thread patches.
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    seen = []

    def patch_later():
        core.patch_namespaced_config_map("cm-1", ns, {"data": {"i": "patched"}})
        core.delete_namespaced_config_map("cm-2", ns)

    w = watch.Watch()
    threading.Timer(0.5, patch_later).start()
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 2:
            w.stop()
    check(seen == [("MODIFIED", "cm-1"), ("DELETED", "cm-2")], "watch events: %s" % seen)
    check(core.read_namespaced_config_map("cm-1", ns).data["i"] == "patched", "patch stored")

    scaled = apps.patch_namespaced_deployment_scale("py-web", ns, {"spec": {"replicas": 3}})
    check(scaled.spec.replicas == 3, "scale subresource")
    check(apps.read_namespaced_deployment("py-web", ns).spec.replicas == 3, "scale stored")

    try:
        core.read_namespaced_config_map("cm-2", ns)
        check(False, "deleted configmap still readable")
    except ApiException as e:
        check(e.status == 404, "want 404, got %d" % e.status)
    try:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Bad_Name")))
        check(False, "invalid name accepted")
    except ApiException as e:
        check(e.status == 422, "want 422, got %d" % e.status)

    core.delete_namespace(ns)
    print("python client: all checks passed")


if __name__ == "__main__":
    main()
