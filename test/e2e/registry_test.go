package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
	"github.com/petrel-project/petrel/test/registry"
)

// startRegistry runs a registry for the test and pushes the test image
// into it under each of repos (repo:tag).
func startRegistry(t *testing.T, opts registry.Options, repos ...string) *registry.Registry {
	t.Helper()
	reg := registry.Start(t, cluster.FreePort(t), opts)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range repos {
		if err := reg.Push(ctx, archive, r); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// podWaiting polls until the pod's first container waits with one of the
// reasons, and returns that state.
func podWaiting(t *testing.T, cs kubernetes.Interface, name string, reasons ...string) *corev1.ContainerStateWaiting {
	t.Helper()
	var w *corev1.ContainerStateWaiting
	poll(t, name+" waiting with "+strings.Join(reasons, " or "), 90*time.Second, func() error {
		p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) > 0 {
			if w = p.Status.ContainerStatuses[0].State.Waiting; w != nil {
				for _, r := range reasons {
					if w.Reason == r {
						return nil
					}
				}
			}
		}
		return fmt.Errorf("statuses %+v", p.Status.ContainerStatuses)
	})
	return w
}

// podRunning polls until the pod runs with its containers ready.
func podRunning(t *testing.T, cs kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	poll(t, name+" running", 90*time.Second, func() error {
		p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 || !p.Status.ContainerStatuses[0].Ready {
			return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
		}
		pod = p
		return nil
	})
	return pod
}

// TestRegistryPulls (issue 23 item 2) pulls from a real registry (Debian's
// docker-registry over HTTPS with a certificate from a test CA, basic auth
// from htpasswd): a Deployment with an imagePullSecret; a pod without one
// gets ErrImagePull explaining the 401, then ImagePullBackOff; a
// ServiceAccount's dockercfg secret serves a pod that names none;
// IfNotPresent does not pull again while Always does; a mirror serves a
// docker.io name; ten pods of an image not yet on the node make one pull.
// Pulls are counted from the registry's own access log.
func TestRegistryPulls(t *testing.T) {
	requireKubectl(t)
	reg := startRegistry(t, registry.Options{TLS: true},
		"petrel/testserver:v1", "petrel/noauth:v1", "petrel/sa:v1", "petrel/ten:v1", "library/mirrored:v1")
	// The node trusts the registry's CA by flag (nothing on the system is
	// changed) and has it mirror Docker Hub.
	u := cluster.StartUp(t, "--lease-renew-interval", "1s", "--registry-ca", reg.CAFile,
		"--registry-mirror", "docker.io="+reg.URL())
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	heads := func(repo string) int {
		return reg.Requests(http.MethodHead, "/v2/"+repo+"/manifests/", http.StatusOK)
	}
	img := func(repo string) string { return reg.Host + "/" + repo }

	kubectl(t, u.Server, "", "create", "secret", "docker-registry", "regcred", "--docker-server="+reg.Host,
		"--docker-username="+reg.Username, "--docker-password="+reg.Password)

	t.Run("a Deployment pulls with its imagePullSecret", func(t *testing.T) {
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: auth, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: auth}}
  template:
    metadata: {labels: {app: auth}}
    spec:
      imagePullSecrets: [{name: regcred}]
      containers: [{name: web, image: %s}]
`, img("petrel/testserver:v1")), "apply", "-f", "-")
		kubectl(t, u.Server, "", "rollout", "status", "deployment/auth", "--timeout=90s")
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=auth"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("auth pods: %v %v", pods, err)
		}
		name := pods.Items[0].Name
		poll(t, "Pulling and Pulled events", 20*time.Second, func() error {
			if err := eventSays(ctx, cs, name, "Pulling", "Pulling image"); err != nil {
				return err
			}
			return eventSays(ctx, cs, name, "Pulled", "Image size: ")
		})
		if n := heads("petrel/testserver"); n != 1 {
			t.Fatalf("registry answered %d manifest HEADs for petrel/testserver, want 1", n)
		}
	})

	t.Run("without the secret: ErrImagePull explains the 401, then back-off", func(t *testing.T) {
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: noauth, namespace: default}
spec:
  containers: [{name: web, image: %s}]
`, img("petrel/noauth:v1")), "apply", "-f", "-")
		w := podWaiting(t, cs, "noauth", "ErrImagePull", "ImagePullBackOff")
		t.Logf("%s: %s", w.Reason, w.Message)
		for _, want := range []string{"401 Unauthorized", reg.Host, "kubectl create secret docker-registry", "imagePullSecrets"} {
			if !strings.Contains(w.Message, want) {
				t.Fatalf("waiting message lacks %q: %s", want, w.Message)
			}
		}
		poll(t, "Failed event", 20*time.Second, func() error {
			return eventSays(ctx, cs, "noauth", "Failed", "401 Unauthorized")
		})
		podWaiting(t, cs, "noauth", "ImagePullBackOff")
		poll(t, "BackOff event", 30*time.Second, func() error {
			return eventSays(ctx, cs, "noauth", "BackOff", "Back-off pulling image")
		})
		if n := heads("petrel/noauth"); n != 0 {
			t.Fatalf("registry served petrel/noauth %d times without a login", n)
		}
	})

	t.Run("the ServiceAccount's dockercfg secret", func(t *testing.T) {
		auth := base64.StdEncoding.EncodeToString([]byte(reg.Username + ":" + reg.Password))
		cfg, _ := json.Marshal(map[string]map[string]string{"https://" + reg.Host: {"auth": auth}})
		if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "oldcred"},
			Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{corev1.DockerConfigKey: cfg}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "puller"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "oldcred"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: via-sa, namespace: default}
spec:
  serviceAccountName: puller
  containers: [{name: web, image: %s}]
`, img("petrel/sa:v1")), "apply", "-f", "-")
		p := podRunning(t, cs, "via-sa")
		if len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "oldcred" {
			t.Fatalf("pod's imagePullSecrets %v, want the ServiceAccount's oldcred", p.Spec.ImagePullSecrets)
		}
	})

	t.Run("IfNotPresent does not pull again, Always does", func(t *testing.T) {
		before := heads("petrel/testserver")
		pod := func(name string, policy corev1.PullPolicy) {
			if _, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}},
					Containers: []corev1.Container{{Name: "web", Image: img("petrel/testserver:v1"), ImagePullPolicy: policy}}}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			podRunning(t, cs, name)
		}
		pod("present", corev1.PullIfNotPresent)
		if err := eventSays(ctx, cs, "present", "Pulled", "already present on machine"); err != nil {
			t.Fatal(err)
		}
		if n := heads("petrel/testserver"); n != before {
			t.Fatalf("IfNotPresent asked the registry %d times", n-before)
		}
		pod("always", corev1.PullAlways)
		if n := heads("petrel/testserver"); n != before+1 {
			t.Fatalf("Always asked the registry %d times, want once", n-before)
		}
	})

	t.Run("a mirror serves a docker.io name", func(t *testing.T) {
		kubectl(t, u.Server, `apiVersion: v1
kind: Pod
metadata: {name: mirrored, namespace: default}
spec:
  imagePullSecrets: [{name: regcred}]
  containers: [{name: web, image: "mirrored:v1"}]
`, "apply", "-f", "-")
		podRunning(t, cs, "mirrored")
		if n := heads("library/mirrored"); n != 1 {
			t.Fatalf("the mirror answered %d manifest HEADs for docker.io/library/mirrored, want 1", n)
		}
	})

	t.Run("ten pods of an image not yet pulled make one pull", func(t *testing.T) {
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: ten, namespace: default}
spec:
  replicas: 10
  selector: {matchLabels: {app: ten}}
  template:
    metadata: {labels: {app: ten}}
    spec:
      imagePullSecrets: [{name: regcred}]
      containers:
      - name: web
        image: %s
        resources: {requests: {cpu: 1m}}
`, img("petrel/ten:v1")), "apply", "-f", "-")
		kubectl(t, u.Server, "", "rollout", "status", "deployment/ten", "--timeout=180s")
		if n := heads("petrel/ten"); n != 1 {
			t.Fatalf("ten pods made %d pulls, want 1", n)
		}
	})

	t.Run("Node.status.images lists the pulled images", func(t *testing.T) {
		poll(t, "Node.status.images", 20*time.Second, func() error {
			n, err := cs.CoreV1().Nodes().Get(ctx, u.NodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			have := map[string]bool{}
			for _, im := range n.Status.Images {
				for _, name := range im.Names {
					have[name] = true
				}
			}
			for _, want := range []string{img("petrel/ten:v1"), img("petrel/testserver:v1"), "docker.io/library/mirrored:v1"} {
				if !have[want] {
					return fmt.Errorf("no %s in %v", want, n.Status.Images)
				}
			}
			return nil
		})
	})
}
