package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
)

// metricsServerVersion is the metrics-server the aggregation test runs.
const metricsServerVersion = "v0.8.0"

// metricsServerBinary is $PETREL_METRICS_SERVER, or metrics-server built
// once from its module.
func metricsServerBinary(t *testing.T) string {
	t.Helper()
	return moduleTool(t, "PETREL_METRICS_SERVER", "sigs.k8s.io/metrics-server/cmd/metrics-server", metricsServerVersion)
}

// TestAggregatedMetricsServer is API aggregation with a real aggregated
// server: metrics-server (k8s.io/apiserver-based, unchanged) runs beside the
// cluster behind a Service; an APIService for v1beta1.metrics.k8s.io takes
// the group from the built-in one, so kubectl top is answered by
// metrics-server (which trusts the API server's front-proxy certificate and
// headers through extension-apiserver-authentication, and scrapes the
// node's /metrics/resource); the APIService turns unavailable when it stops,
// and the built-in group answers again once the APIService is deleted.
func TestAggregatedMetricsServer(t *testing.T) {
	requireKubectl(t)
	bin := metricsServerBinary(t)
	u := cluster.StartUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Published for aggregated servers, as Kubernetes does.
	out := kubectl(t, u.Server, "", "get", "configmap", "-n", "kube-system", "extension-apiserver-authentication",
		"-o", "jsonpath={.data.requestheader-allowed-names} {.data.requestheader-username-headers}")
	mustContain(t, out, `["front-proxy-client"]`, `["X-Remote-User"]`)
	// Request headers are trusted from the front-proxy CA only, not from
	// the cluster CA that signs every client certificate.
	cm, err := u.Clientset().CoreV1().ConfigMaps("kube-system").Get(ctx, "extension-apiserver-authentication", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rh, cl := cm.Data["requestheader-client-ca-file"], cm.Data["client-ca-file"]; rh == "" || rh == cl {
		t.Fatalf("requestheader-client-ca-file is the client CA (or empty): %q", rh)
	}

	// The built-in group versions have Local APIServices, available.
	poll(t, "Local APIServices", 30*time.Second, func() error {
		out, _ := u.Kubectl(ctx, "", "get", "apiservices", "v1.apps", "v2.autoscaling", "v1.", "-o",
			"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=='Available')].reason} {end}")
		if out != "v1.apps=Local v2.autoscaling=Local v1.=Local " {
			return fmt.Errorf("%q", out)
		}
		return nil
	})
	pki := newWebhookPKI(t, "metrics-server.kube-system.svc")
	dir := t.TempDir()
	for name, data := range map[string][]byte{"tls.crt": pki.certPEM, "tls.key": pki.keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := cluster.FreePort(t)
	ms := exec.Command(bin, "--kubeconfig", u.Kubeconfig, "--authentication-kubeconfig", u.Kubeconfig, "--authorization-kubeconfig", u.Kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port),
		"--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-private-key-file", filepath.Join(dir, "tls.key"),
		"--kubelet-insecure-tls", "--kubelet-use-node-status-port", "--kubelet-preferred-address-types", "InternalIP",
		"--metric-resolution", "10s", "--kubelet-request-timeout", "5s", "--v", "2")
	logf, err := os.Create(filepath.Join(dir, "metrics-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ms.Stdout, ms.Stderr = logf, logf
	ms.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ms.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = ms.Process.Kill()
			_ = ms.Wait()
		}
	}
	defer stop()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "metrics-server.log"))
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("metrics-server log (tail):\n%s", b)
		}
	})

	// The Service with an endpoint on loopback, where the host process
	// listens; then the APIService, with the CA that signed its certificate.
	kubectl(t, u.Server, hostService("metrics-server", port)+fmt.Sprintf(`---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {namespace: kube-system, name: metrics-server, port: 443}
  caBundle: %[1]s
  groupPriorityMinimum: 100
  versionPriority: 100
`, base64.StdEncoding.EncodeToString(pki.caPEM)), "apply", "-f", "-")

	poll(t, "the APIService is Available", 90*time.Second, func() error {
		out, _ := u.Kubectl(ctx, "", "get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "jsonpath={.status.conditions[?(@.type=='Available')].status}/{.status.conditions[?(@.type=='Available')].reason}")
		if out != "True/Passed" {
			return fmt.Errorf("Available = %q", out)
		}
		return nil
	})
	// kubectl top through metrics-server (its first scrape needs two
	// samples of the node).
	poll(t, "kubectl top nodes through metrics-server", 90*time.Second, func() error {
		out, err := u.Kubectl(ctx, "", "top", "nodes")
		if err != nil || !strings.Contains(out, u.NodeName) {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	// Discovery, legacy and aggregated, lists the group from metrics-server.
	out = kubectl(t, u.Server, "", "api-resources", "--api-group", "metrics.k8s.io")
	mustContain(t, out, "NodeMetrics", "PodMetrics")
	out = kubectl(t, u.Server, "", "get", "--raw", "/apis/metrics.k8s.io")
	mustContain(t, out, `"v1beta1"`)

	// metrics-server gone: the group is unavailable, not served by the
	// built-in one behind its back.
	stop()
	poll(t, "the APIService turns unavailable", 60*time.Second, func() error {
		out, _ := u.Kubectl(ctx, "", "get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "jsonpath={.status.conditions[?(@.type=='Available')].status}/{.status.conditions[?(@.type=='Available')].reason}")
		if out != "False/FailedDiscoveryCheck" {
			return fmt.Errorf("Available = %q", out)
		}
		return nil
	})
	if out, err := u.Kubectl(ctx, "", "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"); err == nil || !strings.Contains(out, "ServiceUnavailable") && !strings.Contains(out, "service unavailable") && !strings.Contains(out, "503") {
		t.Errorf("metrics with the aggregated server down: %v %s", err, out)
	}
	// Deleting the APIService gives the group back to the built-in one.
	kubectl(t, u.Server, "", "delete", "apiservice", "v1beta1.metrics.k8s.io")
	poll(t, "the built-in metrics answer again", 60*time.Second, func() error {
		out, err := u.Kubectl(ctx, "", "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
		if err != nil || !strings.Contains(out, "NodeMetricsList") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	// Bad input: a name that is not <version>.<group> is a 422 on metadata.name.
	out, err = u.Kubectl(ctx, `apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: wrong.example.com}
spec: {group: example.com, version: v1, groupPriorityMinimum: 100, versionPriority: 10}
`, "create", "-f", "-")
	if err == nil || !strings.Contains(out, "metadata.name") {
		t.Errorf("an APIService with a wrong name: %v %s", err, out)
	}
}
