package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/petrel-project/petrel/test/images"
)

func getPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hasEvent(ctx context.Context, cs kubernetes.Interface, pod, reason string) error {
	evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == pod && e.Reason == reason {
			return nil
		}
	}
	return fmt.Errorf("no %s event for pod %s", reason, pod)
}

// TestPodLifecycle runs pods that exercise the kubelet on real containerd:
// liveness restarts, readiness in the Service, OOM kills, missing images and
// commands, volumes that are not there yet, and graceful deletion.
func TestPodLifecycle(t *testing.T) {
	u := startPodCluster(t)
	// hostPort, hostPath, hostNetwork and privileged pods below.
	allowPrivileged(t, u.Server, "default")
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	apply := func(manifest string) { kubectl(t, u.Server, manifest, "apply", "-f", "-") }
	img := images.TestServer

	t.Run("liveness failure restarts the container", func(t *testing.T) {
		// The first run turns unhealthy after a second; an emptyDir (which
		// outlives the container) tells the second run to stay healthy.
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  containers:
  - name: web
    image: %s
    command: ["sh", "-c", "if [ ! -f /data/once ]; then touch /data/once; (sleep 1; touch /tmp/unhealthy) & fi; exec /testserver"]
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
      failureThreshold: 2
    volumeMounts: [{name: data, mountPath: /data}]
  terminationGracePeriodSeconds: 2
  volumes: [{name: data, emptyDir: {}}]
`, img))
		poll(t, "a restart after the liveness failure", 60*time.Second, func() error {
			p := getPod(ctx, t, cs, "live")
			if len(p.Status.ContainerStatuses) == 0 {
				return fmt.Errorf("no status yet")
			}
			c := p.Status.ContainerStatuses[0]
			if c.RestartCount != 1 || c.State.Running == nil || c.LastTerminationState.Terminated == nil || !c.Ready {
				return fmt.Errorf("restarts %d, state %+v, last %+v, ready %v", c.RestartCount, c.State, c.LastTerminationState, c.Ready)
			}
			return hasEvent(ctx, cs, "live", "Unhealthy")
		})
		// And it stays up: the second run is healthy.
		time.Sleep(3 * time.Second)
		if c := getPod(ctx, t, cs, "live").Status.ContainerStatuses[0]; c.RestartCount != 1 {
			t.Fatalf("restarted again: %+v", c)
		}
	})

	t.Run("liveness restarts are counted and backed off", func(t *testing.T) {
		// sleep as PID 1 ignores SIGTERM, so each run ends by SIGKILL after
		// the grace period; the probe fails from the start.
		w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=livexec"})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: livexec}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sleeper
    image: %s
    command: ["sleep", "3600"]
    livenessProbe:
      exec: {command: ["sh", "-c", "exit 1"]}
      periodSeconds: 1
      failureThreshold: 1
`, img))
		// The second restart comes only after a back-off that the status
		// shows as CrashLoopBackOff, with the run before as lastState.
		var backedOff bool
		var last *corev1.ContainerStatus
		deadline := time.After(90 * time.Second)
		for last == nil || last.RestartCount < 2 || last.State.Running == nil {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatal("the watch ended")
				}
				p, isPod := ev.Object.(*corev1.Pod)
				if !isPod || len(p.Status.ContainerStatuses) == 0 {
					continue
				}
				c := p.Status.ContainerStatuses[0]
				if last != nil && c.RestartCount < last.RestartCount {
					t.Fatalf("restartCount went back from %d to %d", last.RestartCount, c.RestartCount)
				}
				if c.RestartCount > 0 {
					// Running, lastState is the run before; backing off, the
					// run that just ended (whose id the status still shows).
					term := c.LastTerminationState.Terminated
					if term == nil || term.ExitCode == 0 || term.ContainerID == "" || (c.State.Running != nil && term.ContainerID == c.ContainerID) {
						t.Fatalf("restart %d: lastState %+v does not describe the run before (current %s, state %+v)", c.RestartCount, c.LastTerminationState, c.ContainerID, c.State)
					}
				}
				if w := c.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" && c.RestartCount >= 1 {
					backedOff = true
				}
				last = &c
			case <-deadline:
				t.Fatalf("no second restart in 90 s; last status %+v", last)
			}
		}
		if !backedOff {
			t.Fatalf("restarted twice without a back-off shown as CrashLoopBackOff")
		}
		// Each Started event is a run the restart count knows of.
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=livexec,reason=Started"})
		if err != nil {
			t.Fatal(err)
		}
		var started int32
		for _, e := range evs.Items {
			started += max(e.Count, 1)
		}
		restarts := getPod(ctx, t, cs, "livexec").Status.ContainerStatuses[0].RestartCount
		if started > restarts+1 {
			t.Fatalf("%d Started events for %d restarts", started, restarts)
		}
		if err := cs.CoreV1().Pods("default").Delete(ctx, "livexec", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a sidecar with a 63-character name reaches its neighbour over localhost", func(t *testing.T) {
		// The longest name Kubernetes allows, and the pod's loopback and own
		// address, which a new network namespace has down until it is set up.
		long := "sidecar-" + strings.Repeat("x", 55)
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  restartPolicy: Never
  containers:
  - {name: web, image: %[1]s}
  - name: %[2]s
    image: %[1]s
    env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
    command: ["sh", "-c", "for i in $(seq 1 40); do wget -qO- http://127.0.0.1:8080/hostname && wget -qO- http://$POD_IP:8080/hostname && exit 0; sleep 0.5; done; exit 1"]
`, img, long))
		poll(t, "the sidecar to finish", 60*time.Second, func() error {
			for _, c := range getPod(ctx, t, cs, "sidecar").Status.ContainerStatuses {
				if c.Name != long {
					continue
				}
				if term := c.State.Terminated; term != nil {
					if term.ExitCode != 0 {
						t.Fatalf("the sidecar could not reach its neighbour over localhost and its own address: %+v", term)
					}
					return nil
				}
				return fmt.Errorf("sidecar state %+v", c.State)
			}
			return fmt.Errorf("no status for the sidecar yet")
		})
		if err := cs.CoreV1().Pods("default").Delete(ctx, "sidecar", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the node refuses a second pod on a taken host port", func(t *testing.T) {
		// Bound by nodeName, as a scheduler that let it through would.
		hp := func(name string) string {
			return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers: [{name: web, image: %s, ports: [{containerPort: 8080, hostPort: 31999}]}]
`, name, u.NodeName, img)
		}
		apply(hp("hp-first"))
		poll(t, "hp-first running", 30*time.Second, func() error {
			if p := getPod(ctx, t, cs, "hp-first"); p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		apply(hp("hp-second"))
		poll(t, "hp-second refused by the node", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "hp-second")
			if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "NodePorts" {
				return fmt.Errorf("phase %s, reason %q, message %q", p.Status.Phase, p.Status.Reason, p.Status.Message)
			}
			return nil
		})
		if p := getPod(ctx, t, cs, "hp-first"); p.Status.Phase != corev1.PodRunning {
			t.Fatalf("hp-first: phase %s", p.Status.Phase)
		}
		for _, name := range []string{"hp-first", "hp-second"} {
			if err := cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("sysctls: safe ones set, unsafe ones refused by the node, bad names by the API", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: sysctl-safe}
spec:
  restartPolicy: Never
  securityContext:
    sysctls: [{name: kernel.shm_rmid_forced, value: "1"}, {name: net.ipv4.ip_local_port_range, value: "20000 20999"}]
  containers: [{name: c, image: %s, command: ["sh", "-c", "sysctl kernel.shm_rmid_forced net.ipv4.ip_local_port_range"]}]
`, img))
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: sysctl-unsafe}
spec:
  restartPolicy: Never
  securityContext:
    sysctls: [{name: kernel.msgmax, value: "10000000"}]
  containers: [{name: c, image: %s, command: ["true"]}]
`, img))
		poll(t, "sysctl-safe succeeded with its sysctls set", 60*time.Second, func() error {
			if p := getPod(ctx, t, cs, "sysctl-safe"); p.Status.Phase != corev1.PodSucceeded {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			out := kubectl(t, u.Server, "", "logs", "sysctl-safe")
			// busybox prints tabs between the range's numbers.
			if !strings.Contains(out, "kernel.shm_rmid_forced = 1") || !strings.Contains(strings.Join(strings.Fields(out), " "), "net.ipv4.ip_local_port_range = 20000 20999") {
				t.Fatalf("logs: %q", out)
			}
			return nil
		})
		poll(t, "sysctl-unsafe refused by the node", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "sysctl-unsafe")
			if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "SysctlForbidden" || !strings.Contains(p.Status.Message, `"kernel.msgmax"`) {
				return fmt.Errorf("phase %s, reason %q, message %q", p.Status.Phase, p.Status.Reason, p.Status.Message)
			}
			return hasEvent(ctx, cs, "sysctl-unsafe", "SysctlForbidden")
		})
		bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "sysctl-bad"}, Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "foo-", Value: "1"}, {Name: "kernel.shmmax", Value: "1"}, {Name: "bar..", Value: "1"}}},
			Containers:      []corev1.Container{{Name: "c", Image: img}}}}
		_, err := cs.CoreV1().Pods("default").Create(ctx, bad, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), `Invalid value: "foo-"`) || !strings.Contains(err.Error(), `Invalid value: "bar.."`) || strings.Contains(err.Error(), "kernel.shmmax") {
			t.Fatalf("create with bad sysctl names: %v", err)
		}
		for _, name := range []string{"sysctl-safe", "sysctl-unsafe"} {
			if err := cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("securityContext: privileged, capabilities and no_new_privs", func(t *testing.T) {
		pods := map[string]struct{ sc, want string }{
			// Changing a link of the pod's own network namespace needs
			// CAP_NET_ADMIN, which the default set lacks.
			"sc-default":    {`{}`, "Operation not permitted"},
			"sc-privileged": {`{privileged: true}`, "link made"},
			"sc-netadmin":   {`{capabilities: {add: [NET_ADMIN]}}`, "link made"},
			"sc-dropall":    {`{capabilities: {drop: [ALL], add: [NET_ADMIN]}}`, "link made"},
			"sc-nnp":        {`{allowPrivilegeEscalation: false}`, "NoNewPrivs:\t1"},
		}
		for name, p := range pods {
			apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: %s
    securityContext: %s
    command: ["sh", "-c", "grep NoNewPrivs /proc/self/status; ip link set lo mtu 1300 2>&1 && echo link made"]
`, name, img, p.sc))
		}
		for name, p := range pods {
			poll(t, name+" done", 60*time.Second, func() error {
				if ph := getPod(ctx, t, cs, name).Status.Phase; ph != corev1.PodSucceeded && ph != corev1.PodFailed {
					return fmt.Errorf("phase %s", ph)
				}
				return nil
			})
			out := kubectl(t, u.Server, "", "logs", name)
			if !strings.Contains(out, p.want) {
				t.Errorf("%s (securityContext %s): logs %q, want %q", name, p.sc, out, p.want)
			}
			if name == "sc-default" && !strings.Contains(out, "NoNewPrivs:\t0") {
				t.Errorf("sc-default: escalation allowed by default, logs %q", out)
			}
			if err := cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("a failing init container: statuses and conditions worded as Kubernetes", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: initfail}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: init1, image: %[1]s, command: ["false"]}
  - {name: init2, image: %[1]s, command: ["true"]}
  containers: [{name: run1, image: %[1]s, command: ["sleep", "3600"]}]
`, img))
		poll(t, "init1 restarted, the rest waiting", 60*time.Second, func() error {
			p := getPod(ctx, t, cs, "initfail")
			if len(p.Status.InitContainerStatuses) != 2 || len(p.Status.ContainerStatuses) != 1 {
				return fmt.Errorf("statuses %+v", p.Status)
			}
			if p.Status.InitContainerStatuses[0].RestartCount < 1 {
				return fmt.Errorf("init1 not restarted yet")
			}
			for _, c := range []corev1.ContainerStatus{p.Status.InitContainerStatuses[1], p.Status.ContainerStatuses[0]} {
				if c.State.Waiting == nil || c.State.Waiting.Reason != "PodInitializing" {
					t.Fatalf("%s: %+v, want waiting PodInitializing", c.Name, c.State)
				}
			}
			if p.Status.Phase != corev1.PodPending {
				t.Fatalf("phase %s", p.Status.Phase)
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodInitialized && (c.Status != corev1.ConditionFalse || c.Reason != "ContainersNotInitialized" ||
					c.Message != "containers with incomplete status: [init1 init2]") {
					t.Fatalf("Initialized condition %+v", c)
				}
				if c.Type == corev1.PodReady && (c.Reason != "ContainersNotInitialized" || c.Message != "containers with incomplete status: [init1 init2]") {
					t.Fatalf("Ready condition %+v", c)
				}
			}
			return nil
		})
		if err := cs.CoreV1().Pods("default").Delete(ctx, "initfail", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("subPathExpr expands from the environment and may not leave the volume", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: subpath, annotations: {other: x}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: %s
    command: ["sh", "-c", "touch /sub/made-here; exec sleep 3600"]
    env:
    - {name: DIR, valueFrom: {fieldRef: {fieldPath: "metadata.annotations['dir']"}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    volumeMounts:
    - {name: v, mountPath: /sub, subPathExpr: "$(DIR)/$(POD)"}
    - {name: v, mountPath: /whole}
  volumes: [{name: v, emptyDir: {}}]
`, img))
		// Without the annotation the expression is "/subpath": absolute.
		poll(t, "CreateContainerConfigError while the subpath is absolute", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "subpath")
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil ||
				p.Status.ContainerStatuses[0].State.Waiting.Reason != "CreateContainerConfigError" {
				return fmt.Errorf("status %+v", p.Status.ContainerStatuses)
			}
			if p.Status.Phase != corev1.PodPending {
				t.Fatalf("phase %s while the container cannot start", p.Status.Phase)
			}
			return nil
		})
		kubectl(t, u.Server, "", "annotate", "pod", "subpath", "dir=mine")
		poll(t, "running with the subpath made", 30*time.Second, func() error {
			if p := getPod(ctx, t, cs, "subpath"); p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			out, err := u.Kubectl(ctx, "", "exec", "subpath", "--", "ls", "/whole/mine/subpath")
			if err != nil || !strings.Contains(out, "made-here") {
				return fmt.Errorf("ls /whole/mine/subpath: %q %v", out, err)
			}
			return nil
		})
		if err := cs.CoreV1().Pods("default").Delete(ctx, "subpath", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("activeDeadlineSeconds ends a running pod", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: deadline}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: %s, command: ["sleep", "3600"]}]
`, img))
		poll(t, "deadline running", 30*time.Second, func() error {
			if p := getPod(ctx, t, cs, "deadline"); p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		// The deadline may be set (or shortened) on a running pod.
		kubectl(t, u.Server, "", "patch", "pod", "deadline", "-p", `{"spec":{"activeDeadlineSeconds":3}}`)
		poll(t, "deadline Failed with DeadlineExceeded", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "deadline")
			if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "DeadlineExceeded" {
				return fmt.Errorf("phase %s, reason %q", p.Status.Phase, p.Status.Reason)
			}
			return hasEvent(ctx, cs, "deadline", "DeadlineExceeded")
		})
		if err := cs.CoreV1().Pods("default").Delete(ctx, "deadline", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a pull that fails says what to do and backs off", func(t *testing.T) {
		// A registry on a closed loopback port: refused at once.
		apply(`apiVersion: v1
kind: Pod
metadata: {name: nopull}
spec:
  containers: [{name: c, image: "127.0.0.1:1/petrel/absent:1", imagePullPolicy: Always}]
`)
		poll(t, "ImagePullBackOff", 60*time.Second, func() error {
			p := getPod(ctx, t, cs, "nopull")
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil {
				return fmt.Errorf("status %+v", p.Status)
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			if !strings.Contains(w.Message, "petrelctl image import") {
				t.Fatalf("waiting %+v does not say how to load the image without a registry", w)
			}
			if w.Reason != "ImagePullBackOff" {
				return fmt.Errorf("waiting %s", w.Reason)
			}
			return nil
		})
		if err := cs.CoreV1().Pods("default").Delete(ctx, "nopull", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("failing readiness takes the pod out of the Service", func(t *testing.T) {
		flags := t.TempDir()
		for _, name := range []string{"rd-a", "rd-b"} {
			if err := os.MkdirAll(filepath.Join(flags, name), 0o755); err != nil {
				t.Fatal(err)
			}
			apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %[1]s, labels: {app: rd}}
spec:
  containers:
  - name: web
    image: %[2]s
    readinessProbe:
      exec: {command: ["sh", "-c", "test ! -f /flags/notready"]}
      periodSeconds: 1
    volumeMounts: [{name: flags, mountPath: /flags}]
  volumes: [{name: flags, hostPath: {path: %[3]s}}]
`, name, img, filepath.Join(flags, name)))
		}
		apply(`apiVersion: v1
kind: Service
metadata: {name: rd}
spec:
  selector: {app: rd}
  ports: [{port: 80, targetPort: 8080}]
`)
		readyEndpoints := func() (map[string]bool, error) {
			slices, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=rd"})
			if err != nil {
				return nil, err
			}
			out := map[string]bool{}
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					if e.TargetRef != nil {
						out[e.TargetRef.Name] = e.Conditions.Ready != nil && *e.Conditions.Ready
					}
				}
			}
			return out, nil
		}
		poll(t, "both pods ready in the Service", 60*time.Second, func() error {
			eps, err := readyEndpoints()
			if err != nil || !eps["rd-a"] || !eps["rd-b"] {
				return fmt.Errorf("endpoints %v (%v)", eps, err)
			}
			return nil
		})
		if err := os.WriteFile(filepath.Join(flags, "rd-a", "notready"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		poll(t, "rd-a out of the Service", 30*time.Second, func() error {
			eps, err := readyEndpoints()
			if err != nil || eps["rd-a"] || !eps["rd-b"] {
				return fmt.Errorf("endpoints %v (%v)", eps, err)
			}
			return nil
		})
		svc, err := cs.CoreV1().Services("default").Get(ctx, "rd", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Every connection through the ClusterIP now lands on rd-b.
		poll(t, "only rd-b answering", 20*time.Second, func() error {
			for i := 0; i < 10; i++ {
				out, err := u.InCgroup(ctx, "curl", "-sS", "--max-time", "2", "http://"+svc.Spec.ClusterIP+"/hostname")
				if err != nil || out != "rd-b" {
					return fmt.Errorf("answer %q (%v)", out, err)
				}
			}
			return nil
		})
		if p := getPod(ctx, t, cs, "rd-a"); p.Status.Phase != corev1.PodRunning || podReady(p) {
			t.Fatalf("rd-a should run unready: phase %s, conditions %+v", p.Status.Phase, p.Status.Conditions)
		}
	})

	t.Run("memory limit OOM-kills", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: %s
    command: ["sh", "-c", "head -c 200m /dev/zero | tail"]
    resources: {limits: {memory: 32Mi}}
`, img))
		poll(t, "OOMKilled", 60*time.Second, func() error {
			p := getPod(ctx, t, cs, "hog")
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Terminated == nil {
				return fmt.Errorf("not terminated: %+v", p.Status.ContainerStatuses)
			}
			term := p.Status.ContainerStatuses[0].State.Terminated
			if term.Reason != "OOMKilled" || term.ExitCode != 137 || p.Status.Phase != corev1.PodFailed {
				return fmt.Errorf("phase %s, terminated %+v", p.Status.Phase, term)
			}
			return nil
		})
	})

	t.Run("termination messages", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: lastwords}
spec:
  restartPolicy: Never
  containers:
  - {name: file, image: %[1]s, command: ["sh", "-c", "echo 'bye now' > /dev/termination-log; exit 3"]}
  - {name: logs, image: %[1]s, command: ["sh", "-c", "echo oops; exit 4"], terminationMessagePolicy: FallbackToLogsOnError}
  - {name: partial, image: %[1]s, command: ["sh", "-c", "printf DONE; exit 1"], terminationMessagePolicy: FallbackToLogsOnError}
`, img))
		poll(t, "both containers' messages", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "lastwords")
			msgs := map[string]string{}
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Terminated != nil {
					msgs[c.Name] = c.State.Terminated.Message
				}
			}
			// The last words without a newline too (conformance: "echo -n DONE").
			if msgs["file"] != "bye now\n" || msgs["logs"] != "oops\n" || msgs["partial"] != "DONE" || p.Status.Phase != corev1.PodFailed {
				out, _ := u.Kubectl(ctx, "", "logs", "lastwords", "-c", "partial")
				return fmt.Errorf("phase %s, messages %q (partial's log %q)", p.Status.Phase, msgs, out)
			}
			return nil
		})
	})

	t.Run("an image that is not there", func(t *testing.T) {
		apply(`apiVersion: v1
kind: Pod
metadata: {name: noimage}
spec:
  containers: [{name: c, image: petrel.local/absent:1, imagePullPolicy: Never}]
`)
		poll(t, "ErrImageNeverPull", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "noimage")
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil ||
				p.Status.ContainerStatuses[0].State.Waiting.Reason != "ErrImageNeverPull" || p.Status.Phase != corev1.PodPending {
				return fmt.Errorf("status %+v", p.Status)
			}
			return hasEvent(ctx, cs, "noimage", "ErrImageNeverPull")
		})
	})

	t.Run("a command that does not exist", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: nocmd}
spec:
  restartPolicy: Never
  containers: [{name: c, image: %s, command: ["/no/such/binary"]}]
`, img))
		poll(t, "StartError", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "nocmd")
			if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Terminated == nil {
				return fmt.Errorf("status %+v", p.Status)
			}
			term := p.Status.ContainerStatuses[0].State.Terminated
			if term.Reason != "StartError" || !strings.Contains(term.Message, "/no/such/binary") || p.Status.Phase != corev1.PodFailed {
				return fmt.Errorf("phase %s, terminated %+v", p.Status.Phase, term)
			}
			return hasEvent(ctx, cs, "nocmd", "Failed")
		})
	})

	t.Run("a mount of a volume the pod does not have", func(t *testing.T) {
		out, err := u.Kubectl(ctx, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: badmount}
spec:
  containers:
  - {name: c, image: %s, volumeMounts: [{name: nowhere, mountPath: /x}]}
`, img), "apply", "-f", "-")
		if err == nil || !strings.Contains(out, "spec.containers[0].volumeMounts[0].name: Not found") {
			t.Fatalf("want a 422 naming the field, got %v:\n%s", err, out)
		}
		if _, err := cs.CoreV1().Pods("default").Get(ctx, "badmount", metav1.GetOptions{}); err == nil {
			t.Fatal("the invalid pod was stored")
		}
	})

	t.Run("a volume whose ConfigMap comes later", func(t *testing.T) {
		outDir := t.TempDir()
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: needscm}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: %s
    command: ["sh", "-c", "cat /config/greeting > /out/seen; echo \"$GREETING $(cat /etc/podinfo/name) $KUBERNETES_SERVICE_HOST\" >> /out/seen"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    volumeMounts:
    - {name: config, mountPath: /config}
    - {name: out, mountPath: /out}
    - {name: podinfo, mountPath: /etc/podinfo}
  volumes:
  - {name: config, configMap: {name: settings}}
  - {name: out, hostPath: {path: %s}}
  - name: podinfo
    downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
`, img, outDir))
		poll(t, "FailedMount while the ConfigMap is missing", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "needscm")
			if p.Status.Phase != corev1.PodPending {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return hasEvent(ctx, cs, "needscm", "FailedMount")
		})
		kubectl(t, u.Server, "", "create", "configmap", "settings", "--from-literal=greeting=hello")
		poll(t, "the pod to run once the ConfigMap exists", 60*time.Second, func() error {
			if p := getPod(ctx, t, cs, "needscm"); p.Status.Phase != corev1.PodSucceeded {
				return fmt.Errorf("phase %s %+v", p.Status.Phase, p.Status.ContainerStatuses)
			}
			return nil
		})
		b, _ := os.ReadFile(filepath.Join(outDir, "seen"))
		if string(b) != "hellohello needscm 10.96.0.1\n" {
			t.Fatalf("the pod saw %q", b)
		}
	})

	t.Run("a configMap volume follows its ConfigMap", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: cmwatch}
spec:
  containers:
  - {name: c, image: %s, volumeMounts: [{name: config, mountPath: /config}]}
  volumes: [{name: config, configMap: {name: settings}}]
`, img))
		poll(t, "cmwatch running", 30*time.Second, func() error {
			if p := getPod(ctx, t, cs, "cmwatch"); p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		kubectl(t, u.Server, "", "patch", "configmap", "settings", "-p", `{"data":{"greeting":"bonjour"}}`)
		poll(t, "the new value in the running pod", 40*time.Second, func() error {
			out, err := u.Kubectl(ctx, "", "exec", "cmwatch", "--", "cat", "/config/greeting")
			if err != nil || out != "bonjour" {
				return fmt.Errorf("cat = %q (%v)", out, err)
			}
			return nil
		})
	})

	t.Run("logs, exec and port-forward", func(t *testing.T) {
		// The live pod's first run was killed by its probe: its log is the
		// previous one.
		out := kubectl(t, u.Server, "", "logs", "live", "--previous")
		mustContain(t, out, "testserver live: HTTP on :8080")
		out = kubectl(t, u.Server, "", "logs", "live", "-c", "web", "--tail=1", "--timestamps")
		if !strings.Contains(out, "testserver live") || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.HasPrefix(out, "20") {
			t.Fatalf("logs --tail=1 --timestamps: %q", out)
		}
		if out := kubectl(t, u.Server, "", "logs", "live", "--since=1h"); !strings.Contains(out, "testserver live") {
			t.Fatalf("logs --since=1h: %q", out)
		}
		// Logs over a WebSocket, as the API server streams them (the
		// conformance suite reads them so): binary.k8s.io frames.
		if got := logsOverWebSocket(t, u.RESTConfig(), "default", "live"); !strings.Contains(got, "testserver live") {
			t.Fatalf("logs over WebSocket: %q", got)
		}
		out = kubectl(t, u.Server, "", "exec", "live", "--", "sh", "-c", "echo from $(hostname); ls /data")
		mustContain(t, out, "from live", "once")
		// Standard input reaches the command, and its end ends it.
		out = kubectl(t, u.Server, "piped in\n", "exec", "-i", "live", "--", "cat")
		if out != "piped in\n" {
			t.Fatalf("exec -i cat: %q", out)
		}
		// With a terminal (script gives kubectl one), -it gets the container
		// a tty of its own.
		if _, err := exec.LookPath("script"); err == nil {
			tty := exec.CommandContext(ctx, "script", "-qec", "kubectl --kubeconfig "+u.Kubeconfig+" exec -it live -- sh -c 'tty; echo cols=$(stty size)'", "/dev/null")
			tty.Stdin = strings.NewReader("")
			b, err := tty.CombinedOutput()
			if err != nil || !strings.Contains(string(b), "/dev/pts/") || !strings.Contains(string(b), "cols=") {
				t.Fatalf("exec -it through a terminal: %v\n%s", err, b)
			}
		}
		// A failing command's exit code comes back through kubectl.
		cmd := exec.Command("kubectl", "--kubeconfig", u.Kubeconfig, "exec", "live", "--", "sh", "-c", "exit 7")
		if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 7 {
			t.Fatalf("exec exit 7: %v", err)
		}
		// kubectl 1.32 asks for WebSocket v5 first and falls back to SPDY
		// only when that is refused: every exec above must have been v5.
		if n := streamSessions(t, u.MetricsPort, "exec", "v5.channel.k8s.io"); n < 3 {
			t.Fatalf("%v exec sessions over v5.channel.k8s.io, want at least the 3 above without a terminal", n)
		}
		// A kubectl told not to use WebSockets still gets SPDY.
		spdyBefore := streamSessions(t, u.MetricsPort, "exec", "SPDY/3.1")
		cmd = exec.Command("kubectl", "--kubeconfig", u.Kubeconfig, "exec", "-i", "live", "--", "cat")
		cmd.Env = append(os.Environ(), "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false")
		cmd.Stdin = strings.NewReader("over spdy\n")
		if b, err := cmd.CombinedOutput(); err != nil || string(b) != "over spdy\n" {
			t.Fatalf("exec -i cat over SPDY: %v: %q", err, b)
		}
		if n := streamSessions(t, u.MetricsPort, "exec", "SPDY/3.1"); n != spdyBefore+1 {
			t.Fatalf("SPDY exec sessions went from %v to %v, want one more", spdyBefore, n)
		}
		// Follow: a pod that prints a line a second; -f ends when it does.
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: %s, command: ["sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 1; done"]}
`, img))
		poll(t, "ticker running", 30*time.Second, func() error {
			if p := getPod(ctx, t, cs, "ticker"); p.Status.Phase == corev1.PodPending {
				return fmt.Errorf("pending")
			}
			return nil
		})
		out = kubectl(t, u.Server, "", "logs", "-f", "ticker")
		if !strings.Contains(out, "tick 1\ntick 2\ntick 3\n") {
			t.Fatalf("logs -f: %q", out)
		}

		pf := exec.CommandContext(ctx, "kubectl", "--kubeconfig", u.Kubeconfig, "port-forward", "pod/rd-b", ":8080")
		stdout, err := pf.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		pf.Stderr = &stderr
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
		line := make([]byte, 200)
		n, _ := stdout.Read(line)
		var local int
		if _, err := fmt.Sscanf(string(line[:n]), "Forwarding from 127.0.0.1:%d", &local); err != nil {
			t.Fatalf("port-forward said %q (%s)", line[:n], stderr.String())
		}
		body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/hostname", local))
		if body != "rd-b" {
			t.Fatalf("through port-forward: %q (%s)", body, stderr.String())
		}
		if n := streamSessions(t, u.MetricsPort, "portforward", "SPDY/3.1+portforward.k8s.io"); n < 1 {
			t.Fatalf("port-forward did not come as SPDY in a WebSocket, as kubectl 1.32 sends it first")
		}
	})

	t.Run("run -i, run -it and attach -i", func(t *testing.T) {
		// Without a terminal: stdin reaches the container, its answer comes
		// back, and --rm deletes the pod once the attach ends.
		out := kubectl(t, u.Server, "hello\n", "run", "-i", "--rm", "--restart=Never", "reader", "--image="+img, "--command",
			"--", "sh", "-c", "read line; echo got $line")
		mustContain(t, out, "got hello")
		poll(t, "pod reader deleted", 30*time.Second, func() error {
			if _, err := cs.CoreV1().Pods("default").Get(ctx, "reader", metav1.GetOptions{}); err == nil {
				return fmt.Errorf("still there")
			}
			return nil
		})
		// With a terminal (script gives kubectl one): an interactive shell,
		// whose arithmetic proves it ran what was typed.
		if _, err := exec.LookPath("script"); err == nil {
			sh := exec.CommandContext(ctx, "script", "-qec", "kubectl --kubeconfig "+u.Kubeconfig+
				" run -it --rm --restart=Never shell --image="+img+" --command -- sh", "/dev/null")
			sh.Stdin = strings.NewReader("echo marker-$((6*7)); exit\n")
			b, err := sh.CombinedOutput()
			if err != nil || !strings.Contains(string(b), "marker-42") {
				t.Fatalf("run -it through a terminal: %v\n%s", err, b)
			}
		}
		// attach -i to a running container with stdin (kept open between
		// attaches): what is typed is answered; the container ends on "quit".
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: echoer}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: %s
    stdin: true
    command: ["sh", "-c", "while read l; do echo echo:$l; [ \"$l\" = quit ] && exit 0; done"]
`, img))
		poll(t, "echoer running", 30*time.Second, func() error {
			if p := getPod(ctx, t, cs, "echoer"); p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		out = kubectl(t, u.Server, "one\nquit\n", "attach", "-i", "echoer")
		mustContain(t, out, "echo:one", "echo:quit")
		if n := streamSessions(t, u.MetricsPort, "attach", "v5.channel.k8s.io"); n < 2 {
			t.Fatalf("%v attach sessions over v5.channel.k8s.io, want at least run -i's and attach -i's", n)
		}
		poll(t, "echoer succeeded", 30*time.Second, func() error {
			if p := getPod(ctx, t, cs, "echoer"); p.Status.Phase != corev1.PodSucceeded {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		// A container without stdin refuses -i with a reason.
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", u.Kubeconfig, "attach", "-i", "rd-b")
		cmd.Stdin = strings.NewReader("x\n")
		b, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(b), "not started with stdin") {
			t.Fatalf("attach -i to a container without stdin: %v\n%s", err, b)
		}
	})

	t.Run("kubectl debug -it adds an ephemeral container that shares the target's processes", func(t *testing.T) {
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: debugged}
spec:
  containers:
  - {name: app, image: %s, command: ["sleep", "3601"]}
`, img))
		poll(t, "debugged running", 30*time.Second, func() error {
			if p := getPod(ctx, t, cs, "debugged"); p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		// Through a terminal, as a user types it: the debugger's ps sees the
		// target's sleep (they share a process namespace), and its
		// arithmetic proves the shell ran what was typed.
		var out []byte
		if _, err := exec.LookPath("script"); err == nil {
			sh := exec.CommandContext(ctx, "script", "-qec", "kubectl --kubeconfig "+u.Kubeconfig+
				" debug -it debugged --image="+img+" --target=app --container=debugger -- sh", "/dev/null")
			sh.Stdin = strings.NewReader("ps; echo marker-$((6*7)); exit\n")
			var err error
			if out, err = sh.CombinedOutput(); err != nil {
				t.Fatalf("kubectl debug -it: %v\n%s", err, out)
			}
		} else {
			// No terminal to be had (util-linux's script is missing): -i alone.
			out = []byte(kubectl(t, u.Server, "ps; echo marker-$((6*7)); exit\n", "debug", "-i", "debugged", "--image="+img, "--target=app", "--container=debugger", "--", "sh"))
		}
		mustContain(t, string(out), "marker-42", "sleep 3601")
		p := getPod(ctx, t, cs, "debugged")
		if len(p.Spec.EphemeralContainers) != 1 || p.Spec.EphemeralContainers[0].TargetContainerName != "app" {
			t.Fatalf("ephemeral containers: %+v", p.Spec.EphemeralContainers)
		}
		poll(t, "the debugger's status terminated after exit", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "debugged")
			st := p.Status.EphemeralContainerStatuses
			if len(st) != 1 || st[0].Name != "debugger" || st[0].State.Terminated == nil {
				return fmt.Errorf("ephemeral statuses %+v", st)
			}
			if st[0].RestartCount != 0 || st[0].Ready {
				return fmt.Errorf("a debugger is never restarted nor ready: %+v", st[0])
			}
			// The pod itself goes on as it was.
			if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != 1 || !p.Status.ContainerStatuses[0].Ready {
				return fmt.Errorf("pod %s %+v", p.Status.Phase, p.Status.ContainerStatuses)
			}
			return nil
		})
		// An ephemeral container may not be changed or removed once added.
		_, err := cs.CoreV1().Pods("default").UpdateEphemeralContainers(ctx, "debugged", func() *corev1.Pod {
			p := getPod(ctx, t, cs, "debugged")
			p.Spec.EphemeralContainers = nil
			return p
		}(), metav1.UpdateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Fatalf("removing an ephemeral container: %v, want Invalid", err)
		}
	})

	t.Run("pods reach the API server with their service account token", func(t *testing.T) {
		// hostNetwork, so that the API server this test binds to loopback is
		// in reach; the token, CA and namespace come from the projected
		// volume every pod gets, and 10.96.0.1 leads to the API server
		// through the socket load balancer.
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: api-client}
spec:
  hostNetwork: true
  containers:
  - {name: c, image: %s, command: ["sleep", "3600"]}
`, img))
		poll(t, "api-client running", 60*time.Second, func() error {
			if p := getPod(ctx, t, cs, "api-client"); p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s", p.Status.Phase)
			}
			return nil
		})
		p := getPod(ctx, t, cs, "api-client")
		found := false
		for _, v := range p.Spec.Volumes {
			found = found || strings.HasPrefix(v.Name, "kube-api-access-")
		}
		if !found {
			t.Fatalf("no kube-api-access volume: %+v", p.Spec.Volumes)
		}
		const sa = "/var/run/secrets/kubernetes.io/serviceaccount"
		out := kubectl(t, u.Server, "", "exec", "api-client", "--", "sh", "-c", "cat "+sa+"/namespace; echo; head -1 "+sa+"/ca.crt")
		mustContain(t, out, "default\n-----BEGIN CERTIFICATE-----")
		// RBAC: the service account may do nothing with pods until it is
		// bound to a role that allows it.
		poll(t, "the API server refuses the unbound token", 30*time.Second, func() error {
			out, _ := u.Server.Kubectl(ctx, "", "exec", "api-client", "--", "/testserver", "kube-get", "/api/v1/namespaces/default/pods/api-client")
			if !strings.Contains(out, `cannot get resource \"pods\" in API group \"\" in the namespace \"default\"`) {
				return fmt.Errorf("want a 403 naming the permission: %.400s", out)
			}
			return nil
		})
		kubectl(t, u.Server, "", "create", "rolebinding", "api-client-view", "--clusterrole=view", "--serviceaccount=default:default")
		poll(t, "the API server answers the pod's token", 30*time.Second, func() error {
			out, err := u.Server.Kubectl(ctx, "", "exec", "api-client", "--", "/testserver", "kube-get", "/api/v1/namespaces/default/pods/api-client")
			if err != nil || !strings.Contains(out, `"name":"api-client"`) {
				return fmt.Errorf("%v: %.300s", err, out)
			}
			return nil
		})
		// The token is bound to the pod: once the pod is gone, it opens nothing.
		token := kubectl(t, u.Server, "", "exec", "api-client", "--", "cat", sa+"/token")
		get := func(tok string) int {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/api/v1/namespaces/default/pods", u.Port), nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get(token); code != http.StatusOK {
			t.Fatalf("the pod's token from outside: %d", code)
		}
		// kubectl create token: a token for the service account itself.
		made := strings.TrimSpace(kubectl(t, u.Server, "", "create", "token", "default", "--duration=15m"))
		if code := get(made); code != http.StatusOK {
			t.Fatalf("kubectl create token: %d", code)
		}
		if code := get(made + "x"); code != http.StatusUnauthorized {
			t.Fatalf("a forged token: %d", code)
		}
		kubectl(t, u.Server, "", "delete", "pod", "api-client", "--wait=true", "--timeout=60s")
		if code := get(token); code != http.StatusUnauthorized {
			t.Fatalf("the token of a deleted pod: %d, want 401", code)
		}
	})

	t.Run("deletion stops and cleans up", func(t *testing.T) {
		p := getPod(ctx, t, cs, "live")
		uid := string(p.UID)
		kubectl(t, u.Server, "", "delete", "pod", "live", "--wait=true", "--timeout=60s")
		for _, leftover := range []string{"/run/netns/petrel-" + uid, filepath.Join(u.DataDir, "pods", uid),
			filepath.Join(u.LBCgroup, "pods", "pod"+uid), "/sys/fs/cgroup/memory/" + filepath.Base(u.LBCgroup) + "/pods/pod" + uid} {
			if _, err := os.Stat(leftover); err == nil {
				t.Errorf("%s is left after the pod was deleted", leftover)
			}
		}
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// streamSessions is how many exec, attach or port-forward sessions (kind)
// the node server counted for a protocol, from its metrics.
func streamSessions(t *testing.T, metricsPort int, kind, protocol string) float64 {
	t.Helper()
	series := fmt.Sprintf(`petrel_node_stream_sessions_total{kind=%q,protocol=%q} `, kind, protocol)
	for _, line := range strings.Split(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)), "\n") {
		if v, ok := strings.CutPrefix(line, series); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return n
		}
	}
	return 0
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// logsOverWebSocket reads a pod's log through a WebSocket on pods/log with
// the binary.k8s.io protocol until the server closes it.
func logsOverWebSocket(t *testing.T, cfg *rest.Config, ns, pod string) string {
	t.Helper()
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{TLSClientConfig: tlsCfg, Subprotocols: []string{"binary.k8s.io"}, HandshakeTimeout: 10 * time.Second}
	u := strings.Replace(cfg.Host, "https://", "wss://", 1) + "/api/v1/namespaces/" + ns + "/pods/" + pod + "/log"
	conn, resp, err := d.Dial(u, nil)
	if err != nil {
		body := ""
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			body = fmt.Sprintf(" (%s: %s)", resp.Status, b)
		}
		t.Fatalf("dial %s: %v%s", u, err, body)
	}
	defer conn.Close()
	if conn.Subprotocol() != "binary.k8s.io" {
		t.Fatalf("subprotocol %q", conn.Subprotocol())
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out strings.Builder
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			break
		}
		out.Write(msg)
	}
	return out.String()
}
