package e2e

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"

	"github.com/petrel-project/petrel/test/images"
)

// metricsAdapter is a custom and external metrics API server, as
// prometheus-adapter or KEDA serve them through APIServices: every pod the
// labelSelector picks has perPod of a Pods metric, and an external metric's
// one series has the value external. The values are the test's to set.
type metricsAdapter struct {
	perPod, external atomic.Int64
	mu               sync.Mutex
	asked            []string
}

func (a *metricsAdapter) handler(t *testing.T, pods func(ns, selector string) []string) http.Handler {
	write := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.asked = append(a.asked, r.URL.Path)
		a.mu.Unlock()
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		switch {
		case r.URL.Path == "/apis/custom.metrics.k8s.io/v1beta2":
			write(w, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "custom.metrics.k8s.io/v1beta2",
				APIResources: []metav1.APIResource{{Name: "pods/requests_per_second", Namespaced: true, Kind: "MetricValueList", Verbs: []string{"get"}}}})
		case r.URL.Path == "/apis/external.metrics.k8s.io/v1beta1":
			write(w, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "external.metrics.k8s.io/v1beta1",
				APIResources: []metav1.APIResource{{Name: "queue_depth", Namespaced: true, Kind: "ExternalMetricValueList", Verbs: []string{"get"}}}})
		// /apis/custom.metrics.k8s.io/v1beta2/namespaces/NS/pods/*/METRIC
		case len(parts) == 8 && parts[1] == "custom.metrics.k8s.io" && parts[5] == "pods" && parts[6] == "*":
			list := cmv1beta2.MetricValueList{TypeMeta: metav1.TypeMeta{Kind: "MetricValueList", APIVersion: "custom.metrics.k8s.io/v1beta2"}}
			for _, name := range pods(parts[4], r.URL.Query().Get("labelSelector")) {
				list.Items = append(list.Items, cmv1beta2.MetricValue{
					DescribedObject: corev1.ObjectReference{Kind: "Pod", Namespace: parts[4], Name: name, APIVersion: "/v1"},
					Metric:          cmv1beta2.MetricIdentifier{Name: parts[7]}, Timestamp: metav1.Now(),
					Value: *resource.NewQuantity(a.perPod.Load(), resource.DecimalSI)})
			}
			write(w, list)
		// /apis/external.metrics.k8s.io/v1beta1/namespaces/NS/METRIC
		case len(parts) == 6 && parts[1] == "external.metrics.k8s.io":
			write(w, emv1beta1.ExternalMetricValueList{TypeMeta: metav1.TypeMeta{Kind: "ExternalMetricValueList", APIVersion: "external.metrics.k8s.io/v1beta1"},
				Items: []emv1beta1.ExternalMetricValue{{MetricName: parts[5], Timestamp: metav1.Now(), Value: *resource.NewQuantity(a.external.Load(), resource.DecimalSI)}}})
		default:
			http.NotFound(w, r)
		}
	})
}

// TestHPAScalesOnCustomAndExternalMetrics: an HPA with a Pods metric (from
// custom.metrics.k8s.io) and an External metric (from
// external.metrics.k8s.io), both served by an adapter registered as
// APIServices, scales a Deployment on whichever asks more, and back down;
// with no adapter the HPA says why in ScalingActive.
func TestHPAScalesOnCustomAndExternalMetrics(t *testing.T) {
	u := startPodCluster(t, "--horizontal-pod-autoscaler-sync-period", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := u.Clientset()
	adapter := &metricsAdapter{}
	adapter.perPod.Store(10)
	pki := newWebhookPKI(t, "metrics-adapter.kube-system.svc")
	cert, err := tls.X509KeyPair(pki.certPEM, pki.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(adapter.handler(t, func(ns, selector string) []string {
		list, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil
		}
		var names []string
		for _, p := range list.Items {
			names = append(names, p.Name)
		}
		return names
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	kubectl(t, u.Server, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: queue-worker}
spec:
  replicas: 1
  selector: {matchLabels: {app: queue-worker}}
  template:
    metadata: {labels: {app: queue-worker}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: main, image: %s}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: queue-worker}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: queue-worker}
  minReplicas: 1
  maxReplicas: 4
  metrics:
  - type: Pods
    pods: {metric: {name: requests_per_second}, target: {type: AverageValue, averageValue: "10"}}
  - type: External
    external: {metric: {name: queue_depth, selector: {matchLabels: {queue: jobs}}}, target: {type: AverageValue, averageValue: "100"}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
`, images.TestServer), "apply", "-f", "-")
	status := func(jsonpath string) string {
		out, _ := u.Kubectl(ctx, "", "get", "hpa", "queue-worker", "-o", "jsonpath="+jsonpath)
		return out
	}
	// No adapter yet: the HPA says it cannot get the metrics.
	poll(t, "ScalingActive False without an adapter", 60*time.Second, func() error {
		if got := status("{.status.conditions[?(@.type=='ScalingActive')].status} {.status.conditions[?(@.type=='ScalingActive')].message}"); !strings.HasPrefix(got, "False ") || !strings.Contains(got, "requests_per_second") {
			return fmt.Errorf("ScalingActive %q", got)
		}
		return nil
	})

	// The adapter on the host, behind a Service, registered for both groups.
	kubectl(t, u.Server, hostService("metrics-adapter", port)+fmt.Sprintf(`---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta2.custom.metrics.k8s.io}
spec:
  group: custom.metrics.k8s.io
  version: v1beta2
  service: {namespace: kube-system, name: metrics-adapter, port: 443}
  caBundle: %[1]s
  groupPriorityMinimum: 100
  versionPriority: 200
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.external.metrics.k8s.io}
spec:
  group: external.metrics.k8s.io
  version: v1beta1
  service: {namespace: kube-system, name: metrics-adapter, port: 443}
  caBundle: %[1]s
  groupPriorityMinimum: 100
  versionPriority: 100
`, base64.StdEncoding.EncodeToString(pki.caPEM)), "apply", "-f", "-")

	replicas := func(want int32) func() error {
		return func() error {
			d, err := cs.AppsV1().Deployments("default").Get(ctx, "queue-worker", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if *d.Spec.Replicas != want {
				return fmt.Errorf("replicas %d, HPA %s", *d.Spec.Replicas, status("{.status.conditions} {.status.currentMetrics}"))
			}
			return nil
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := u.Kubectl(context.Background(), "", "get", "apiservices", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io", "-o", "wide")
			t.Logf("APIServices:\n%s", out)
			out, _ = u.Kubectl(context.Background(), "", "get", "--raw", "/apis")
			t.Logf("/apis: %.3000s", out)
		}
	})
	// 30 requests/s per pod against 10: three times the pods.
	adapter.perPod.Store(30)
	poll(t, "scaled to 3 on the Pods metric", 90*time.Second, replicas(3))
	if got := status("{.status.conditions[?(@.type=='ScalingActive')].status}/{.status.conditions[?(@.type=='ScalingActive')].reason}"); got != "True/ValidMetricFound" {
		t.Errorf("ScalingActive %s", got)
	}
	// The queue grows: 400 items at 100 per pod asks for 4, more than
	// the Pods metric does (10 per pod holds).
	adapter.perPod.Store(10)
	adapter.external.Store(400)
	poll(t, "scaled to 4 on the External metric", 90*time.Second, replicas(4))
	if got := status("{.status.currentMetrics[*].type}"); got != "Pods External" {
		t.Errorf("currentMetrics types %q", got)
	}
	// Quiet: back to the minimum.
	adapter.perPod.Store(0)
	adapter.external.Store(0)
	poll(t, "back to 1", 90*time.Second, replicas(1))
	adapter.mu.Lock()
	asked := strings.Join(adapter.asked, " ")
	adapter.mu.Unlock()
	mustContain(t, asked, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/requests_per_second",
		"/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth")
}
