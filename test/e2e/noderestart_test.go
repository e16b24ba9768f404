package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/dataplane/lbview"
	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
)

// TestNodeRestartAdoptsPods kills the node daemon: its pods keep serving
// while it is down, it adopts them when it is back (same containers, no
// restart), and it cleans up after a pod deleted from the API meanwhile.
func TestNodeRestartAdoptsPods(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)
	n := cluster.StartNode(t, s)
	cs := s.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "image", "import", "--data-dir", n.DataDir, archive).CombinedOutput(); err != nil {
		t.Fatalf("petrelctl image import: %v\n%s", err, out)
	}
	kubectl(t, s, "", "create", "deployment", "keep", "--image="+images.TestServer, "--replicas=2")
	kubectl(t, s, "", "rollout", "status", "deployment/keep", "--timeout=90s")
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=keep"})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods %v (%v)", pods, err)
	}
	kept, gone := pods.Items[0], pods.Items[1]
	// Ready has no probe behind it here: wait for the server to listen.
	poll(t, "the kept pod serving", 30*time.Second, func() error {
		resp, err := http.Get("http://" + kept.Status.PodIP + ":8080/hostname")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})

	n.Kill()
	// The data path does not need the daemon.
	if body := httpGet(t, "http://"+kept.Status.PodIP+":8080/hostname"); body != kept.Name {
		t.Fatalf("pod %s answered %q while the node was down", kept.Name, body)
	}
	kubectl(t, s, "", "delete", "pod", gone.Name, "--grace-period=0", "--force")
	// More Services than a reflector's first page: the restarted node must
	// program every one (its first list once came back with 500 of them).
	createServicesWithSlices(t, cs, "default", manyObjects, 8080)
	n.Start()
	poll(t, "every Service programmed after the restart", 90*time.Second, func() error {
		out, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "bpf", "lb", "list", "--pin-dir", n.PinDir, "-o", "json").CombinedOutput()
		if err != nil {
			return fmt.Errorf("petrelctl bpf lb list: %v: %s", err, out)
		}
		var rows []lbview.Frontend
		if err := json.Unmarshal(out, &rows); err != nil {
			return err
		}
		ips := map[string]bool{}
		for _, r := range rows {
			if len(r.Backends) == 1 && strings.HasPrefix(r.Backends[0].Address, "127.0.0.1:8080") {
				ips[r.Address] = true
			}
		}
		if len(ips) != manyObjects {
			return fmt.Errorf("%d of %d Services have their frontend and backend", len(ips), manyObjects)
		}
		return nil
	})

	poll(t, "the deleted pod's leftovers removed", 60*time.Second, func() error {
		for _, p := range []string{"/run/netns/petrel-" + string(gone.UID), filepath.Join(n.DataDir, "pods", string(gone.UID))} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s is still there", p)
			}
		}
		return nil
	})
	kubectl(t, s, "", "rollout", "status", "deployment/keep", "--timeout=90s")
	p, err := cs.CoreV1().Pods("default").Get(ctx, kept.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before, after := kept.Status.ContainerStatuses[0], p.Status.ContainerStatuses[0]
	if after.ContainerID != before.ContainerID || after.RestartCount != 0 || after.State.Running == nil ||
		!after.State.Running.StartedAt.Equal(&before.State.Running.StartedAt) || p.Status.PodIP != kept.Status.PodIP {
		t.Fatalf("the pod was not adopted as it ran:\nbefore %+v\nafter  %+v", before, after)
	}
	if p.Status.Phase != corev1.PodRunning || !podReady(p) {
		t.Fatalf("adopted pod: phase %s, conditions %+v", p.Status.Phase, p.Status.Conditions)
	}
	// Logs and exec work on the adopted pod.
	mustContain(t, kubectl(t, s, "", "logs", kept.Name), "testserver "+kept.Name)
	if out := kubectl(t, s, "", "exec", kept.Name, "--", "hostname"); strings.TrimSpace(out) != kept.Name {
		t.Fatalf("exec hostname: %q", out)
	}
}
