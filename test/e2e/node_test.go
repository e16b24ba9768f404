package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/dataplane/lbview"
	"github.com/petrel-project/petrel/test/cluster"
)

// httpBackend serves "hello from <name>" on a loopback port.
func httpBackend(t *testing.T, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from %s", name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func webManifest(port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: %d, protocol: TCP}]
endpoints:
- addresses: ["127.0.0.1"]
  conditions: {ready: true}
`, port)
}

func frontends(t *testing.T, u *cluster.Up) map[string]lbview.Frontend {
	t.Helper()
	out, err := u.Petrelctl(context.Background(), "bpf", "lb", "list", "-o", "json")
	if err != nil {
		t.Fatalf("petrelctl bpf lb list: %v\n%s", err, out)
	}
	var rows []lbview.Frontend
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	m := map[string]lbview.Frontend{}
	for _, r := range rows {
		m[r.Frontend] = r
	}
	return m
}

func poll(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNodeServicesAndDNS runs `petrel up` and uses it as a user would: a
// Service made with kubectl is reached at its ClusterIP and by name through
// kube-dns, which the node's socket load balancer leads to its node-local
// DNS; the maps are read with petrelctl; and forwarding goes on while the
// process is killed and comes back.
func TestNodeServicesAndDNS(t *testing.T) {
	// Pods here are reported by hand, so the node runs no kubelet; the pods
	// tests run real ones.
	u := cluster.StartUp(t, "--run-pods=false")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	out, err := u.Kubectl(ctx, "", "get", "node", u.NodeName, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
	if err != nil || out != "True" {
		t.Fatalf("node %s Ready = %q (%v)", u.NodeName, out, err)
	}
	port := httpBackend(t, "web")
	if out, err := u.Kubectl(ctx, webManifest(port), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	vip, err := u.Kubectl(ctx, "", "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("kube-dns answers through the node-local DNS", func(t *testing.T) {
		poll(t, "dig @10.96.0.10", 10*time.Second, func() error {
			out, err := u.InCgroup(ctx, "dig", "+short", "+time=1", "+tries=1", "@10.96.0.10", "web.default.svc.cluster.local")
			if err != nil || strings.TrimSpace(out) != vip {
				return fmt.Errorf("dig = %q (%v), want %s", out, err, vip)
			}
			return nil
		})
		out, err := u.InCgroup(ctx, "dig", "+short", "+tcp", "+time=1", "+tries=1", "@10.96.0.10", "-x", vip)
		if err != nil || strings.TrimSpace(out) != "web.default.svc.cluster.local." {
			t.Errorf("PTR over TCP = %q (%v)", out, err)
		}
	})

	t.Run("the ClusterIP reaches the backend", func(t *testing.T) {
		poll(t, "curl the ClusterIP", 10*time.Second, func() error {
			out, err := u.InCgroup(ctx, "curl", "-sS", "--max-time", "2", "http://"+vip+"/")
			if err != nil || out != "hello from web" {
				return fmt.Errorf("curl = %q (%v)", out, err)
			}
			return nil
		})
	})

	t.Run("the kubernetes Service leads to the API server", func(t *testing.T) {
		out, err := u.InCgroup(ctx, "curl", "-sSk", "--max-time", "2", "https://10.96.0.1/version")
		if err != nil || !strings.Contains(out, `"gitVersion"`) {
			t.Errorf("curl https://10.96.0.1/version = %q (%v)", out, err)
		}
	})

	t.Run("petrelctl shows the frontends and joins them with Services", func(t *testing.T) {
		f := frontends(t, u)
		web, ok := f[vip+":80/TCP"]
		if !ok || len(web.Backends) != 1 || web.Backends[0].Address != fmt.Sprintf("127.0.0.1:%d", port) {
			t.Fatalf("frontend %s:80/TCP = %+v (all: %v)", vip, web, f)
		}
		if dns := f["10.96.0.10:53/UDP"]; len(dns.Backends) != 1 || dns.Backends[0].Address != u.LocalDNS.String()+":53" {
			t.Errorf("kube-dns frontend = %+v", dns)
		}
		out, err := u.Petrelctl(ctx, "service", "list")
		if err != nil || !strings.Contains(out, "web") || !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", port)) {
			t.Errorf("petrelctl service list:\n%s (%v)", out, err)
		}
		out, err = u.Petrelctl(ctx, "bpf", "maps")
		if err != nil || !strings.Contains(out, "petrel_lb4_svc") {
			t.Errorf("petrelctl bpf maps:\n%s (%v)", out, err)
		}
	})

	t.Run("a selector Service follows its pods through the EndpointSlice controller", func(t *testing.T) {
		podPort := httpBackend(t, "pod")
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: app-1, namespace: default, labels: {app: app}}
spec:
  nodeName: %s
  containers: [{name: c, image: petrel.local/testserver:1, ports: [{name: http, containerPort: %d}]}]
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec:
  selector: {app: app}
  ports: [{name: http, port: 80, targetPort: http}]
`, u.NodeName, podPort)
		if out, err := u.Kubectl(ctx, manifest, "apply", "-f", "-"); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		// This node runs no kubelet: report the pod running and ready on
		// loopback, as a kubelet would through the status subresource.
		cs := u.Clientset()
		pod, err := cs.CoreV1().Pods("default").Get(ctx, "app-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1", PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		appIP, err := u.Kubectl(ctx, "", "get", "service", "app", "-o", "jsonpath={.spec.clusterIP}")
		if err != nil {
			t.Fatal(err)
		}
		poll(t, "curl the selector Service", 10*time.Second, func() error {
			out, err := u.InCgroup(ctx, "curl", "-sS", "--max-time", "2", "http://"+appIP+"/")
			if err != nil || out != "hello from pod" {
				return fmt.Errorf("curl = %q (%v)", out, err)
			}
			return nil
		})
		out, err := u.Kubectl(ctx, "", "get", "endpointslices", "-l", "kubernetes.io/service-name=app",
			"-o", "jsonpath={.items[0].endpoints[0].targetRef.name} {.items[0].ports[0].port}")
		if err != nil || out != fmt.Sprintf("app-1 %d", podPort) {
			t.Errorf("EndpointSlice = %q (%v)", out, err)
		}
		// Not ready any more: out of rotation, and connects are refused.
		pod, _ = cs.CoreV1().Pods("default").Get(ctx, "app-1", metav1.GetOptions{})
		pod.Status.Conditions[0].Status = corev1.ConditionFalse
		if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "not-ready pod leaves the rotation", 10*time.Second, func() error {
			out, err := u.InCgroup(ctx, "curl", "-sS", "--max-time", "2", "http://"+appIP+"/")
			// curl's 7 is "couldn't connect": the socket LB refused it.
			if err == nil || !strings.Contains(out, "(7)") {
				return fmt.Errorf("curl = %q (%v), want a failed connect", out, err)
			}
			return nil
		})
	})

	t.Run("user-written Endpoints of a selectorless Service are mirrored into slices", func(t *testing.T) {
		legacyPort := httpBackend(t, "legacy")
		manifest := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: legacy, namespace: default}
subsets:
- addresses: [{ip: 127.0.0.1}]
  ports: [{name: http, port: %d}]
`, legacyPort)
		if out, err := u.Kubectl(ctx, manifest, "apply", "-f", "-"); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		ip, err := u.Kubectl(ctx, "", "get", "service", "legacy", "-o", "jsonpath={.spec.clusterIP}")
		if err != nil {
			t.Fatal(err)
		}
		poll(t, "curl the mirrored Service", 10*time.Second, func() error {
			out, err := u.InCgroup(ctx, "curl", "-sS", "--max-time", "2", "http://"+ip+"/")
			if err != nil || out != "hello from legacy" {
				return fmt.Errorf("curl = %q (%v)", out, err)
			}
			return nil
		})
		out, err := u.Kubectl(ctx, "", "get", "endpointslices", "-l", "kubernetes.io/service-name=legacy", "-o", "jsonpath={.items[*].metadata.labels.endpointslice\\.kubernetes\\.io/managed-by}")
		if err != nil || out != "endpointslicemirroring-controller.k8s.io" {
			t.Errorf("mirrored slice managed-by = %q (%v)", out, err)
		}
	})

	t.Run("forwarding goes on while the node is down, and a restart picks up changes", func(t *testing.T) {
		u.Kill()
		out, err := u.InCgroup(ctx, "curl", "-sS", "--max-time", "2", "http://"+vip+"/")
		if err != nil || out != "hello from web" {
			t.Fatalf("with the node killed: curl = %q (%v)", out, err)
		}
		if f := frontends(t, u); len(f[vip+":80/TCP"].Backends) != 1 {
			t.Errorf("petrelctl with the node down: %v", f)
		}
		u.Start()
		u.WaitNode()
		if out, err := u.Kubectl(ctx, "", "delete", "service", "web"); err != nil {
			t.Fatalf("kubectl delete: %v\n%s", err, out)
		}
		poll(t, "frontend removed", 10*time.Second, func() error {
			if _, ok := frontends(t, u)[vip+":80/TCP"]; ok {
				return fmt.Errorf("still in the maps")
			}
			return nil
		})
	})
}
