package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
)

// startPodCluster is `petrel up` with the test image imported through
// petrelctl, as a user would load it.
func startPodCluster(t *testing.T, extraArgs ...string) *cluster.Up {
	t.Helper()
	requireKubectl(t)
	for _, bin := range []string{"containerd", "runc", images.Busybox} {
		if _, err := os.Stat(bin); err != nil && !strings.HasPrefix(bin, "/") {
			continue
		} else if err != nil {
			t.Skipf("%s is not installed (make deps installs it)", bin)
		}
	}
	u := cluster.StartUp(t, append([]string{"--lease-renew-interval", "1s"}, extraArgs...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "image", "import", "--data-dir", u.DataDir, archive).CombinedOutput()
	if err != nil || !strings.Contains(string(out), images.TestServer) {
		t.Fatalf("petrelctl image import: %v\n%s", err, out)
	}
	return u
}

// TestPodsServeThroughServiceByName is the whole cluster at work: a
// Deployment of the test server on containerd, exposed as a Service, and
// another pod reaching it by its DNS name through the socket load balancer,
// answered by every replica.
func TestPodsServeThroughServiceByName(t *testing.T) {
	u := startPodCluster(t)
	allowPrivileged(t, u.Server, "default") // the client writes its answers to a hostPath
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The node lists the imported image.
	poll(t, "Node.status.images", 20*time.Second, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, u.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, img := range n.Status.Images {
			for _, name := range img.Names {
				if name == images.TestServer {
					return nil
				}
			}
		}
		return fmt.Errorf("images %v", n.Status.Images)
	})

	kubectl(t, u.Server, "", "create", "deployment", "web", "--image="+images.TestServer, "--replicas=3")
	kubectl(t, u.Server, "", "expose", "deployment", "web", "--port=80", "--target-port=8080")
	kubectl(t, u.Server, "", "rollout", "status", "deployment/web", "--timeout=90s")
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" || !podIPIn(u, p.Status.PodIP) {
			t.Fatalf("pod %s: phase %s, IP %q", p.Name, p.Status.Phase, p.Status.PodIP)
		}
		names[p.Name] = true
	}
	if len(names) != 3 {
		t.Fatalf("want 3 web pods, got %v", names)
	}

	// An ExternalName alias of it, which the client resolves as a CNAME.
	kubectl(t, u.Server, "", "create", "service", "externalname", "ext", "--external-name=web.default.svc.cluster.local")

	// A client pod asks the Service by name many times and writes what it
	// heard where the test can read it.
	outDir := t.TempDir()
	kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: %s
    command: ["sh", "-c", "nslookup ext > /out/ext 2>&1; for i in $(seq 60); do wget -qO- http://web.default.svc.cluster.local/hostname; echo; done > /out/answers"]
    volumeMounts: [{name: out, mountPath: /out}]
  volumes:
  - name: out
    hostPath: {path: %s}
`, images.TestServer, outDir), "apply", "-f", "-")
	poll(t, "the client pod to finish", 90*time.Second, func() error {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "client", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodSucceeded {
			return fmt.Errorf("client phase %s: %+v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		return nil
	})
	b, err := os.ReadFile(filepath.Join(outDir, "answers"))
	if err != nil {
		t.Fatal(err)
	}
	web, err := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Through the pod's search path (ndots:5), as an application would ask.
	ext, _ := os.ReadFile(filepath.Join(outDir, "ext"))
	if !strings.Contains(string(ext), "canonical name = web.default.svc.cluster.local") || !strings.Contains(string(ext), web.Spec.ClusterIP) {
		t.Fatalf("nslookup ext in the pod:\n%s", ext)
	}
	heard := map[string]int{}
	for _, line := range strings.Fields(string(b)) {
		if !names[line] {
			t.Fatalf("an answer from %q, which is no web pod (answers %q)", line, b)
		}
		heard[line]++
	}
	if len(heard) != 3 {
		t.Fatalf("answers came from %v, want all three replicas", heard)
	}

	// The Python client reads a pod's log and execs in it.
	if out, err := exec.Command("/usr/bin/python3", "-c", "import kubernetes").CombinedOutput(); err != nil {
		t.Logf("python3-kubernetes is not installed, skipping its part: %s", out)
		return
	}
	py := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join("python", "pods_check.py"), u.Kubeconfig)
	py.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + os.TempDir()}
	if out, err := py.CombinedOutput(); err != nil || !strings.Contains(string(out), "all checks passed") {
		t.Fatalf("python client: %v\n%s", err, out)
	}
}

// podIPIn reports whether ip is in the cluster's pod range.
func podIPIn(u *cluster.Up, ip string) bool {
	prefix, err := netip.ParsePrefix(u.ClusterCIDR)
	addr, err2 := netip.ParseAddr(ip)
	return err == nil && err2 == nil && prefix.Contains(addr)
}
