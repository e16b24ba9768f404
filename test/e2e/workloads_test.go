package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
)

const replicaSetManifest = `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web, namespace: default}
spec:
  replicas: 5
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: petrel.local/testserver:1, ports: [{containerPort: 8080}],
                    resources: {requests: {cpu: 100m}}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`

// TestSchedulerAndReplicaSetOnSimulatedNodes drives the control loops the
// way a user does, with kubectl, on three simulated nodes: node IPAM, the
// scheduler (spreading, nodeSelector, the unschedulable message and its
// retry), the ReplicaSet controller (scale up and down) and EndpointSlices.
func TestSchedulerAndReplicaSetOnSimulatedNodes(t *testing.T) {
	s := cluster.StartServer(t, "--lb-pool", "198.51.100.0/29")
	s.StartSimulatedNodes("sim", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := s.Clientset()

	poll(t, "three nodes with pod CIDRs", 30*time.Second, func() error {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		cidrs := map[string]bool{}
		for _, n := range nodes.Items {
			if n.Spec.PodCIDR != "" {
				cidrs[n.Spec.PodCIDR] = true
			}
		}
		if len(nodes.Items) != 3 || len(cidrs) != 3 {
			return fmt.Errorf("%d nodes, distinct pod CIDRs %v", len(nodes.Items), cidrs)
		}
		return nil
	})

	t.Run("LoadBalancer Services get a pool address, namespaces a default ServiceAccount", func(t *testing.T) {
		if out, err := s.Kubectl(ctx, "", "create", "service", "loadbalancer", "lb", "--tcp=80:8080"); err != nil {
			t.Fatalf("kubectl create service: %v\n%s", err, out)
		}
		poll(t, "ingress address", 20*time.Second, func() error {
			out, err := s.Kubectl(ctx, "", "get", "service", "lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
			if err != nil || out != "198.51.100.1" {
				return fmt.Errorf("ingress = %q (%v)", out, err)
			}
			return nil
		})
		if out, err := s.Kubectl(ctx, "", "patch", "service", "lb", "--type=json",
			"-p", `[{"op":"replace","path":"/spec/type","value":"ClusterIP"},{"op":"remove","path":"/spec/ports/0/nodePort"}]`); err != nil {
			t.Fatalf("kubectl patch: %v\n%s", err, out)
		}
		poll(t, "address released", 20*time.Second, func() error {
			out, err := s.Kubectl(ctx, "", "get", "service", "lb", "-o", "jsonpath={.status.loadBalancer.ingress}")
			if err != nil || out != "" {
				return fmt.Errorf("ingress = %q (%v)", out, err)
			}
			return nil
		})
		if out, err := s.Kubectl(ctx, "", "create", "namespace", "team-a"); err != nil {
			t.Fatalf("kubectl create namespace: %v\n%s", err, out)
		}
		poll(t, "default ServiceAccount", 20*time.Second, func() error {
			_, err := s.Kubectl(ctx, "", "get", "serviceaccount", "default", "-n", "team-a")
			return err
		})
	})

	if out, err := s.Kubectl(ctx, replicaSetManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	runningPods := func(want int) []corev1.Pod {
		t.Helper()
		var pods []corev1.Pod
		poll(t, fmt.Sprintf("%d running pods", want), 60*time.Second, func() error {
			list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			pods = nil
			for _, p := range list.Items {
				if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
					pods = append(pods, p)
				}
			}
			if len(pods) != want || len(list.Items) != want {
				return fmt.Errorf("%d running of %d pods", len(pods), len(list.Items))
			}
			return nil
		})
		return pods
	}
	pods := runningPods(5)
	perNode := map[string]int{}
	for _, p := range pods {
		perNode[p.Spec.NodeName]++
		node, err := cs.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		prefix := netip.MustParsePrefix(node.Spec.PodCIDR)
		if ip, err := netip.ParseAddr(p.Status.PodIP); err != nil || !prefix.Contains(ip) {
			t.Errorf("pod %s has IP %q outside its node's %s", p.Name, p.Status.PodIP, prefix)
		}
	}
	for n, c := range perNode {
		if c > 2 {
			t.Errorf("replicas not spread: %v (node %s has %d)", perNode, n, c)
		}
	}
	poll(t, "ReplicaSet status", 20*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "rs", "web", "-o", "jsonpath={.status.replicas}/{.status.readyReplicas}/{.status.availableReplicas}")
		if err != nil || out != "5/5/5" {
			return fmt.Errorf("status = %q (%v)", out, err)
		}
		return nil
	})
	poll(t, "EndpointSlice with 5 ready endpoints", 20*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "endpointslices", "-l", "kubernetes.io/service-name=web",
			"-o", "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]} {end}")
		if err != nil || len(strings.Fields(out)) != 5 {
			return fmt.Errorf("ready endpoints = %q (%v)", out, err)
		}
		return nil
	})

	if out, err := s.Kubectl(ctx, "", "scale", "rs", "web", "--replicas=2"); err != nil {
		t.Fatalf("kubectl scale: %v\n%s", err, out)
	}
	runningPods(2)

	// A pod that fits nowhere says why, then goes once a node matches.
	pinned := `apiVersion: v1
kind: Pod
metadata: {name: needs-ssd, namespace: default}
spec:
  nodeSelector: {disk: ssd}
  containers: [{name: c, image: petrel.local/testserver:1}]
`
	if out, err := s.Kubectl(ctx, pinned, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	poll(t, "PodScheduled=False with the reason", 20*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pod", "needs-ssd", "-o", "jsonpath={.status.conditions[?(@.type=='PodScheduled')].message}")
		if err != nil || out != "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector." {
			return fmt.Errorf("message = %q (%v)", out, err)
		}
		return nil
	})
	poll(t, "FailedScheduling event", 20*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "events", "--field-selector", "involvedObject.name=needs-ssd", "-o", "jsonpath={.items[*].reason}")
		if err != nil || !strings.Contains(out, "FailedScheduling") {
			return fmt.Errorf("events = %q (%v)", out, err)
		}
		return nil
	})
	if out, err := s.Kubectl(ctx, "", "label", "node", "sim-1", "disk=ssd"); err != nil {
		t.Fatalf("kubectl label: %v\n%s", err, out)
	}
	poll(t, "scheduled once a node matches", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pod", "needs-ssd", "-o", "jsonpath={.spec.nodeName} {.status.phase}")
		if err != nil || out != "sim-1 Running" {
			return fmt.Errorf("pod = %q (%v)", out, err)
		}
		return nil
	})

	// kube-burner's kubelet-density shape: bare pods that request nothing,
	// created in a burst, spread as kube-scheduler spreads them (non-zero
	// default requests, random ties) rather than filling one node.
	t.Run("pods that request nothing spread", func(t *testing.T) {
		const pods = 30
		for i := range pods {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("density-%d", i), Labels: map[string]string{"density": "yes"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "petrel.local/testserver:1"}}}}
			if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		per := map[string]int{}
		poll(t, "every density pod bound", 30*time.Second, func() error {
			list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "density=yes"})
			if err != nil {
				return err
			}
			clear(per)
			for _, p := range list.Items {
				if p.Spec.NodeName == "" {
					return fmt.Errorf("%s not bound", p.Name)
				}
				per[p.Spec.NodeName]++
			}
			return nil
		})
		for _, node := range []string{"sim-0", "sim-1", "sim-2"} {
			if n := per[node]; n > pods/3+3 {
				t.Errorf("%s holds %d of %d pods that request nothing: %v", node, n, pods, per)
			}
		}
	})
}
