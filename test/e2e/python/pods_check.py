"""Pod logs and exec through the official Python client, as a Python
operator or harness would use them on a Petrel cluster. Argument: the
kubeconfig; prints 'all checks passed' at the end."""
import sys

from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config(sys.argv[1])
core = client.CoreV1Api()
pods = core.list_namespaced_pod("default", label_selector="app=web").items
assert pods, "no web pods"
name = pods[0].metadata.name

log = core.read_namespaced_pod_log(name, "default", tail_lines=5)
assert "testserver " + name in log, "log: %r" % log

out = stream(core.connect_get_namespaced_pod_exec, name, "default",
             command=["sh", "-c", "echo from $(hostname)"],
             stderr=True, stdin=False, stdout=True, tty=False)
assert out.strip() == "from " + name, "exec: %r" % out
print("all checks passed")
