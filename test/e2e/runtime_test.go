package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/petrel-project/petrel/dataplane/runtime"
	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
)

// TestRuntimeClasses (issue 23 item 1): the server makes RuntimeClasses
// crun and runc; pods naming either run with that OCI runtime (containerd's
// runc shim runs the binary, whose own state files show which one ran), a
// pod naming none runs with the node's default (crun where installed), the
// Node lists both handlers, and an unknown class is refused at admission.
func TestRuntimeClasses(t *testing.T) {
	for _, bin := range []string{"/usr/bin/crun", "/usr/sbin/runc"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("%s is not installed (make deps installs crun and runc)", bin)
		}
	}
	if err := runtime.PrepareCrun(); err != nil {
		t.Skipf("crun cannot run containers on this host: %v", err)
	}
	u := startPodCluster(t)
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	out := kubectl(t, u.Server, "", "get", "runtimeclasses")
	mustContain(t, out, "crun", "runc", "HANDLER")

	pod := func(name, class string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: images.TestServer, ImagePullPolicy: corev1.PullNever}}}}
		if class != "" {
			p.Spec.RuntimeClassName = &class
		}
		return p
	}
	for name, class := range map[string]string{"rc-crun": "crun", "rc-runc": "runc", "rc-default": ""} {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod(name, class), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	_, err := cs.CoreV1().Pods("default").Create(ctx, pod("rc-nope", "nope"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `RuntimeClass "nope" not found`) || !strings.Contains(err.Error(), "kubectl get runtimeclasses") {
		t.Fatalf("a pod of an unknown RuntimeClass: %v, want 403 saying the class is not found and how to list them", err)
	}

	for name, want := range map[string]string{"rc-crun": "crun", "rc-runc": "runc", "rc-default": "crun"} {
		var id string
		poll(t, name+" running", 90*time.Second, func() error {
			p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 || !p.Status.ContainerStatuses[0].Ready {
				return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
			}
			id = strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
			return nil
		})
		// The event says which runtime made it...
		poll(t, name+"'s Created event", 30*time.Second, func() error {
			return eventSays(ctx, cs, name, "Created", "(OCI runtime "+want+")")
		})
		// ...and the runtime's own state proves it: runc keeps state.json
		// in its root, crun a status file. The shim's root is
		// /run/containerd/runc/<namespace>.
		state := filepath.Join("/run/containerd/runc/petrel", id)
		entries, err := os.ReadDir(state)
		if err != nil {
			t.Fatalf("%s: the OCI runtime's state of container %s: %v", name, id, err)
		}
		var files []string
		for _, e := range entries {
			files = append(files, e.Name())
		}
		_, runcState := os.Stat(filepath.Join(state, "state.json"))
		ranRunc := runcState == nil
		if ranRunc != (want == "runc") {
			t.Fatalf("%s should run with %s; its runtime state directory holds %v", name, want, files)
		}
		t.Logf("%s ran with %s: state %v", name, want, files)
		// Either way the container is in the node's cgroup subtree of the
		// v2 hierarchy too, where the socket load balancer sees it.
		cg := kubectl(t, u.Server, "", "exec", name, "--", "cat", "/proc/1/cgroup")
		mustContain(t, cg, "0::/"+filepath.Base(u.LBCgroup)+"/pods/pod")
	}

	// petrelctl shows it too, from containerd.
	js, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "container", "list", "--data-dir", u.DataDir, "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("petrelctl container list: %v\n%s", err, js)
	}
	var listed struct {
		Containers []struct{ Pod, OCIRuntime string }
	}
	if err := json.Unmarshal(js, &listed); err != nil {
		t.Fatalf("petrelctl container list -o json: %v\n%s", err, js)
	}
	got := map[string]string{}
	for _, c := range listed.Containers {
		got[c.Pod] = c.OCIRuntime
	}
	if got["rc-crun"] != "crun" || got["rc-runc"] != "runc" || got["rc-default"] != "crun" {
		t.Fatalf("petrelctl container list: runtimes %v, want crun, runc and crun\n%s", got, js)
	}
	table, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "container", "list", "--data-dir", u.DataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("petrelctl container list: %v\n%s", err, table)
	}
	mustContain(t, string(table), "OCI RUNTIME", "rc-runc")
	t.Logf("petrelctl container list:\n%s", table)

	n, err := cs.CoreV1().Nodes().Get(ctx, u.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var handlers []string
	for _, h := range n.Status.RuntimeHandlers {
		handlers = append(handlers, h.Name)
	}
	if strings.Join(handlers, ",") != "crun,runc" {
		t.Fatalf("Node.status.runtimeHandlers %v, want crun and runc", handlers)
	}
}

// eventSays finds an event of the pod with the reason whose message holds
// text.
func eventSays(ctx context.Context, cs kubernetes.Interface, pod, reason, text string) error {
	evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"involvedObject.name": pod, "reason": reason}.String()})
	if err != nil {
		return err
	}
	var seen []string
	for _, e := range evs.Items {
		if strings.Contains(e.Message, text) {
			return nil
		}
		seen = append(seen, e.Message)
	}
	return fmt.Errorf("no %s event of %s saying %q (seen %q)", reason, pod, text, seen)
}
