// Package e2e drives a real petrel server with the real clients: /usr/bin/kubectl,
// client-go and the Python client.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
)

const appYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: demo
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  namespace: demo
stringData:
  password: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: petrel.local/testserver:1
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
`

func requireKubectl(t *testing.T) {
	if _, err := os.Stat("/usr/bin/kubectl"); err != nil && os.Getenv("KUBECTL") == "" {
		t.Skip("kubectl is not installed at /usr/bin/kubectl")
	}
}

// kubectl runs kubectl and fails the test on error.
func kubectl(t *testing.T, s *cluster.Server, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := s.Kubectl(ctx, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestKubectl(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)

	t.Run("auth can-i and whoami", func(t *testing.T) {
		mustContain(t, kubectl(t, s, "", "auth", "can-i", "create", "pods"), "yes")
		mustContain(t, kubectl(t, s, "", "auth", "can-i", "--list"), "*.*")
		mustContain(t, kubectl(t, s, "", "auth", "whoami"), "petrel-admin", "system:masters")
		// A service account token alone (no client certificate): its
		// service account's name and groups.
		var token string
		waitFor(t, 20*time.Second, func() bool {
			out, err := s.Kubectl(context.Background(), "", "create", "token", "default")
			token = strings.TrimSpace(out)
			return err == nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, cluster.KubectlPath(), "--kubeconfig", "/dev/null", "--server", fmt.Sprintf("https://127.0.0.1:%d", s.Port),
			"--insecure-skip-tls-verify", "--token", token, "auth", "whoami")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "system:serviceaccount:default:default") || !strings.Contains(string(out), "system:serviceaccounts:default") {
			t.Fatalf("whoami with a token: %v\n%s", err, out)
		}
	})

	t.Run("petrel kubectl", func(t *testing.T) {
		// petrel kubectl runs petrel-kubectl from beside the binary with
		// the data dir's admin kubeconfig, keeping kubectl's exit status.
		run := func(args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, cluster.Binary(t), append([]string{"kubectl", "--data-dir", s.DataDir}, args...)...)
			for _, e := range os.Environ() {
				if !strings.HasPrefix(e, "KUBECONFIG=") {
					cmd.Env = append(cmd.Env, e)
				}
			}
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		out, err := run("get", "namespace", "kube-system", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "namespace/kube-system" {
			t.Fatalf("petrel kubectl get: %v\n%s", err, out)
		}
		out, err = run("get", "namespace", "no-such-namespace")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, `namespaces "no-such-namespace" not found`) {
			t.Fatalf("petrel kubectl get of a missing namespace: %v\n%s", err, out)
		}
	})

	t.Run("kube-root-ca.crt is put back", func(t *testing.T) {
		ca, err := os.ReadFile(filepath.Join(s.DataDir, "pki", "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		published := func() bool {
			out, err := s.Kubectl(context.Background(), "", "get", "configmap", "kube-root-ca.crt", "-n", "kube-public", "-o", "jsonpath={.data.ca\\.crt}")
			return err == nil && strings.TrimSpace(out) == strings.TrimSpace(string(ca))
		}
		waitFor(t, 20*time.Second, published)
		kubectl(t, s, "", "patch", "configmap", "kube-root-ca.crt", "-n", "kube-public", "--type=merge", "-p", `{"data":{"ca.crt":"forged"}}`)
		waitFor(t, 20*time.Second, published)
		kubectl(t, s, "", "delete", "configmap", "kube-root-ca.crt", "-n", "kube-public")
		waitFor(t, 20*time.Second, published)
	})

	t.Run("apply multi-document", func(t *testing.T) {
		out := kubectl(t, s, appYAML, "apply", "-f", "-")
		mustContain(t, out, "namespace/demo created", "configmap/web-config created", "secret/web-secret created",
			"deployment.apps/web created", "service/web created")
		out = kubectl(t, s, appYAML, "apply", "-f", "-")
		mustContain(t, out, "namespace/demo unchanged", "configmap/web-config unchanged", "deployment.apps/web unchanged")
	})

	t.Run("get outputs", func(t *testing.T) {
		out := kubectl(t, s, "", "get", "deployments", "-n", "demo")
		if !regexp.MustCompile(`(?m)^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\s*$`).MatchString(out) || !regexp.MustCompile(`(?m)^web\s+0/2\s+[02]\s+0\s+`).MatchString(out) {
			t.Fatalf("default table wrong:\n%s", out)
		}
		out = kubectl(t, s, "", "get", "deploy", "web", "-n", "demo", "-o", "wide")
		mustContain(t, out, "CONTAINERS", "IMAGES", "SELECTOR", "petrel.local/testserver:1", "app=web")
		out = kubectl(t, s, "", "get", "svc", "web", "-n", "demo")
		if !regexp.MustCompile(`web\s+NodePort\s+10\.96\.\d+\.\d+\s+<none>\s+80:3\d{4}/TCP`).MatchString(out) {
			t.Fatalf("service row wrong:\n%s", out)
		}
		out = kubectl(t, s, "", "get", "cm", "web-config", "-n", "demo", "-o", "yaml")
		mustContain(t, out, "apiVersion: v1", "kind: ConfigMap", "greeting: hello", "resourceVersion:", "uid:")
		out = kubectl(t, s, "", "get", "secret", "web-secret", "-n", "demo", "-o", "json")
		var secret struct {
			Type string            `json:"type"`
			Data map[string]string `json:"data"`
		}
		if err := json.Unmarshal([]byte(out), &secret); err != nil {
			t.Fatalf("-o json is not JSON: %v\n%s", err, out)
		}
		if secret.Type != "Opaque" || secret.Data["password"] != "czNjcmV0" {
			t.Fatalf("secret not stored as expected: %+v", secret)
		}
		out = kubectl(t, s, "", "get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas} {.spec.strategy.type} {.spec.template.spec.restartPolicy}")
		if out != "2 RollingUpdate Always" {
			t.Fatalf("jsonpath (with defaults) = %q", out)
		}
		out = kubectl(t, s, "", "get", "pods,deploy", "-A", "-o", "custom-columns=KIND:.kind,NAME:.metadata.name,NS:.metadata.namespace")
		if !regexp.MustCompile(`Deployment\s+web\s+demo`).MatchString(out) {
			t.Fatalf("custom-columns wrong:\n%s", out)
		}
		out = kubectl(t, s, "", "get", "namespaces")
		for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease", "demo"} {
			if !regexp.MustCompile(`(?m)^` + ns + `\s+Active\s+`).MatchString(out) {
				t.Fatalf("namespace %s missing:\n%s", ns, out)
			}
		}
		out = kubectl(t, s, "", "get", "svc", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}")
		if out != "10.96.0.1" {
			t.Fatalf("kubernetes service ClusterIP = %q", out)
		}
		out = kubectl(t, s, "", "get", "svc", "kube-dns", "-n", "kube-system")
		if !regexp.MustCompile(`kube-dns\s+ClusterIP\s+10\.96\.0\.10\s+<none>\s+53/UDP,53/TCP`).MatchString(out) {
			t.Fatalf("kube-dns service:\n%s", out)
		}
	})

	t.Run("label annotate patch scale", func(t *testing.T) {
		mustContain(t, kubectl(t, s, "", "label", "deploy", "web", "-n", "demo", "tier=front"), "deployment.apps/web labeled")
		mustContain(t, kubectl(t, s, "", "annotate", "deploy", "web", "-n", "demo", "note=hi"), "deployment.apps/web annotated")
		mustContain(t, kubectl(t, s, "", "patch", "deploy", "web", "-n", "demo", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"petrel.local/testserver:2"}]}}}}`), "patched")
		mustContain(t, kubectl(t, s, "", "patch", "deploy", "web", "-n", "demo", "--type=merge", "-p", `{"metadata":{"labels":{"merge":"yes"}}}`), "patched")
		mustContain(t, kubectl(t, s, "", "patch", "deploy", "web", "-n", "demo", "--type=json", "-p", `[{"op":"replace","path":"/spec/replicas","value":4}]`), "patched")
		mustContain(t, kubectl(t, s, "", "scale", "deploy", "web", "-n", "demo", "--replicas=5"), "deployment.apps/web scaled")
		out := kubectl(t, s, "", "get", "deploy", "web", "-n", "demo", "-o",
			"jsonpath={.metadata.labels.tier},{.metadata.labels.merge},{.metadata.annotations.note},{.spec.replicas},{.spec.template.spec.containers[0].image},{.metadata.generation}")
		// generation: 1 at create, +1 image, +1 replicas 4, +1 replicas 5
		if out != "front,yes,hi,5,petrel.local/testserver:2,4" {
			t.Fatalf("after label/annotate/patches/scale got %q", out)
		}
		// A strategic merge patch keeps the other list items: add a second container.
		kubectl(t, s, "", "patch", "deploy", "web", "-n", "demo", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}`)
		out = kubectl(t, s, "", "get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.template.spec.containers[*].name}")
		if out != "side web" && out != "web side" {
			t.Fatalf("strategic merge lost a container: %q", out)
		}
	})

	t.Run("server-side apply", func(t *testing.T) {
		cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: demo\ndata:\n  a: \"1\"\n"
		mustContain(t, kubectl(t, s, cm, "apply", "--server-side", "-f", "-"), "configmap/ssa serverside-applied")
		out := kubectl(t, s, "", "get", "cm", "ssa", "-n", "demo", "-o", "json", "--show-managed-fields")
		mustContain(t, out, `"manager": "kubectl"`, `"operation": "Apply"`, `"f:a"`)
		// Another manager changing a field it does not own conflicts...
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		other := strings.Replace(cm, `a: "1"`, `a: "2"`, 1)
		out, err := s.Kubectl(ctx, other, "apply", "--server-side", "--field-manager=other", "-f", "-")
		if err == nil || !strings.Contains(out, "conflict") {
			t.Fatalf("expected an apply conflict, got err=%v:\n%s", err, out)
		}
		// ...unless forced.
		kubectl(t, s, other, "apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-")
		if got := kubectl(t, s, "", "get", "cm", "ssa", "-n", "demo", "-o", "jsonpath={.data.a}"); got != "2" {
			t.Fatalf("forced apply did not take: %q", got)
		}
	})

	t.Run("edit", func(t *testing.T) {
		editor := filepath.Join(t.TempDir(), "editor.sh")
		if err := os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := s.KubectlEnv(ctx, []string{"EDITOR=" + editor, "KUBE_EDITOR=" + editor}, "", "edit", "cm", "web-config", "-n", "demo")
		if err != nil {
			t.Fatalf("edit: %v\n%s", err, out)
		}
		mustContain(t, out, "configmap/web-config edited")
		if got := kubectl(t, s, "", "get", "cm", "web-config", "-n", "demo", "-o", "jsonpath={.data.greeting}"); got != "edited" {
			t.Fatalf("edit not stored: %q", got)
		}
	})

	t.Run("get -w", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, err := s.Kubectl(ctx, "", "get", "cm", "-n", "demo", "-w", "--request-timeout=0", "-l", "watched=yes")
			done <- result{out, err}
		}()
		time.Sleep(1500 * time.Millisecond)
		kubectl(t, s, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w1\n  namespace: demo\n  labels: {watched: \"yes\"}\ndata: {k: v}\n", "apply", "-f", "-")
		kubectl(t, s, "", "label", "cm", "w1", "-n", "demo", "extra=1")
		time.Sleep(1500 * time.Millisecond)
		cancel()
		r := <-done
		rows := regexp.MustCompile(`(?m)^w1\s+1\s+`).FindAllString(r.out, -1)
		if len(rows) < 2 {
			t.Fatalf("watch should print w1 on create and on label, got:\n%s", r.out)
		}
		if strings.Contains(r.out, "web-config") {
			t.Fatalf("label selector ignored by watch:\n%s", r.out)
		}
	})

	t.Run("explain api-resources version", func(t *testing.T) {
		out := kubectl(t, s, "", "explain", "deployment.spec.replicas")
		mustContain(t, out, "KIND:", "Deployment", "FIELD: replicas <integer>")
		out = kubectl(t, s, "", "explain", "pods.spec.containers")
		mustContain(t, out, "FIELD: containers <[]Container>", "image")
		out = kubectl(t, s, "", "api-resources")
		for _, re := range []string{`(?m)^pods\s+po\s+v1\s+true\s+Pod$`, `(?m)^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$`,
			`(?m)^endpointslices\s+discovery.k8s.io/v1\s+true\s+EndpointSlice$`, `(?m)^leases\s+coordination.k8s.io/v1\s+true\s+Lease$`,
			`(?m)^cronjobs\s+cj\s+batch/v1\s+true\s+CronJob$`, `(?m)^networkpolicies\s+netpol\s+networking.k8s.io/v1\s+true\s+NetworkPolicy$`} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Fatalf("api-resources lacks %s:\n%s", re, out)
			}
		}
		out = kubectl(t, s, "", "version")
		mustContain(t, out, "Server Version: v1.32.0-petrel")
	})

	t.Run("delete cascade modes", func(t *testing.T) {
		owned := func(owner, uid, name string) string {
			return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: demo\n  ownerReferences:\n  - {apiVersion: apps/v1, kind: Deployment, name: " +
				owner + ", uid: " + uid + ", blockOwnerDeletion: true}\n"
		}
		for _, mode := range []string{"background", "foreground", "orphan"} {
			name := "own-" + mode
			kubectl(t, s, "", "create", "deployment", name, "-n", "demo", "--image=petrel.local/testserver:1")
			uid := kubectl(t, s, "", "get", "deploy", name, "-n", "demo", "-o", "jsonpath={.metadata.uid}")
			kubectl(t, s, owned(name, uid, "dep-"+mode), "apply", "-f", "-")
			mustContain(t, kubectl(t, s, "", "delete", "deploy", name, "-n", "demo", "--cascade="+mode), `deployment.apps "`+name+`" deleted`)
			deadline := time.Now().Add(15 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				out, err := s.Kubectl(ctx, "", "get", "cm", "dep-"+mode, "-n", "demo", "-o", "jsonpath={.metadata.ownerReferences}")
				cancel()
				gone := err != nil && strings.Contains(out, "NotFound")
				if mode == "orphan" {
					if err != nil {
						t.Fatalf("orphan deletion removed the dependent: %s", out)
					}
					if out == "" {
						break // the owner reference was removed: orphaned.
					}
				} else if gone {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s deletion: dependent in wrong state: %v %s", mode, err, out)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	})

	t.Run("delete namespace", func(t *testing.T) {
		mustContain(t, kubectl(t, s, "", "delete", "namespace", "demo", "--timeout=60s"), `namespace "demo" deleted`)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := s.Kubectl(ctx, "", "get", "namespace", "demo")
		if err == nil || !strings.Contains(out, "NotFound") {
			t.Fatalf("namespace still there: %s", out)
		}
		out, err = s.Kubectl(ctx, "", "delete", "namespace", "kube-system")
		if err == nil || !strings.Contains(out, "may not be deleted") {
			t.Fatalf("kube-system deletion should be forbidden: %s", out)
		}
	})
}
