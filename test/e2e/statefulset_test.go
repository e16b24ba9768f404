package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/petrel-project/petrel/test/cluster"
)

const statefulSetManifest = `apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: petrel.local/testserver:1}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`

// TestStatefulSet checks ordered start with stable names, hostnames and
// per-ordinal claims, scale down from the top, and a rolling update.
func TestStatefulSet(t *testing.T) {
	s := cluster.StartServer(t)
	s.StartSimulatedNodes("sts", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := s.Clientset()

	var mu sync.Mutex
	var order []string
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=db"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				mu.Lock()
				order = append(order, p.Name)
				mu.Unlock()
			}
		}
	}()
	if out, err := s.Kubectl(ctx, statefulSetManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if out, err := s.Kubectl(ctx, "", "rollout", "status", "statefulset/db", "--timeout=60s"); err != nil {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	mu.Lock()
	if strings.Join(order, ",") != "db-0,db-1,db-2" {
		t.Errorf("pods created in order %v, want db-0,db-1,db-2", order)
	}
	mu.Unlock()
	out, _ := s.Kubectl(ctx, "", "get", "pod", "db-1", "-o", "jsonpath={.spec.hostname}.{.spec.subdomain} {.spec.volumes[?(@.name=='data')].persistentVolumeClaim.claimName}")
	if out != "db-1.db data-db-1" {
		t.Errorf("db-1 identity = %q", out)
	}
	poll(t, "headless slice with hostnames", 20*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "endpointslices", "-l", "kubernetes.io/service-name=db", "-o", "jsonpath={.items[0].endpoints[*].hostname}")
		if err != nil || len(strings.Fields(out)) != 3 || !strings.Contains(out, "db-2") {
			return fmt.Errorf("hostnames = %q (%v)", out, err)
		}
		return nil
	})

	// OrderedReady scale-down halts while an unhealthy pod sits below the
	// next one to go (db-2 broken, and db-0 too), and goes on once the
	// lowest unhealthy pod is the one to remove.
	setReady := func(pod, status string) {
		t.Helper()
		if out, err := s.Kubectl(ctx, "", "patch", "pod", pod, "--subresource=status", "-p",
			`{"status":{"conditions":[{"type":"Ready","status":"`+status+`"}]}}`); err != nil {
			t.Fatalf("patch %s Ready=%s: %v\n%s", pod, status, err, out)
		}
	}
	setReady("db-0", "False")
	setReady("db-2", "False")
	if out, err := s.Kubectl(ctx, "", "scale", "statefulset", "db", "--replicas=1"); err != nil {
		t.Fatalf("kubectl scale: %v\n%s", err, out)
	}
	time.Sleep(3 * time.Second)
	if out, _ := s.Kubectl(ctx, "", "get", "pods", "-l", "app=db", "-o", "name"); strings.Count(out, "pod/db-") != 3 {
		t.Fatalf("scale-down went past unhealthy db-0: %q", out)
	}
	setReady("db-0", "True")
	poll(t, "scaled down to db-0", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pods", "-l", "app=db", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "pod/db-0" {
			return fmt.Errorf("pods = %q (%v)", out, err)
		}
		return nil
	})
	if out, _ := s.Kubectl(ctx, "", "get", "pvc", "-o", "name"); strings.Count(out, "persistentvolumeclaim/data-db-") != 3 {
		t.Errorf("claims must outlive scale-down: %q", out)
	}

	if out, err := s.Kubectl(ctx, "", "scale", "statefulset", "db", "--replicas=3"); err != nil {
		t.Fatalf("kubectl scale: %v\n%s", err, out)
	}
	if out, err := s.Kubectl(ctx, "", "rollout", "status", "statefulset/db", "--timeout=60s"); err != nil {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	if out, err := s.Kubectl(ctx, "", "set", "image", "statefulset/db", "db=petrel.local/testserver:2"); err != nil {
		t.Fatalf("set image: %v\n%s", err, out)
	}
	if out, err := s.Kubectl(ctx, "", "rollout", "status", "statefulset/db", "--timeout=90s"); err != nil {
		t.Fatalf("rollout status after set image: %v\n%s", err, out)
	}
	poll(t, "all pods updated", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pods", "-l", "app=db", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}")
		if err != nil || strings.Count(out, "testserver:2") != 3 {
			return fmt.Errorf("images = %q (%v)", out, err)
		}
		return nil
	})
	if out, _ := s.Kubectl(ctx, "", "rollout", "history", "statefulset/db"); !strings.Contains(out, "1") || !strings.Contains(out, "2") {
		t.Errorf("rollout history:\n%s", out)
	}

	// A partitioned (canary) update: only ordinals at or above the
	// partition take the new template, and a pod below it that is deleted
	// comes back at the current revision, not the update's.
	if out, err := s.Kubectl(ctx, "", "patch", "statefulset", "db", "-p",
		`{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}},"template":{"spec":{"containers":[{"name":"db","image":"petrel.local/testserver:3"}]}}}}`); err != nil {
		t.Fatalf("patch: %v\n%s", err, out)
	}
	images := func() string {
		out, _ := s.Kubectl(ctx, "", "get", "pods", "db-0", "db-1", "db-2", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image} {end}")
		return out
	}
	want := "db-0=petrel.local/testserver:2 db-1=petrel.local/testserver:2 db-2=petrel.local/testserver:3 "
	poll(t, "the canary at ordinal 2 only", 60*time.Second, func() error {
		if got := images(); got != want {
			return fmt.Errorf("images %q, want %q", got, want)
		}
		return nil
	})
	if err := cs.CoreV1().Pods("default").Delete(ctx, "db-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "db-0 back at the current revision", 60*time.Second, func() error {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "db-0", metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp != nil {
			return fmt.Errorf("db-0 not back yet (%v)", err)
		}
		if got := images(); got != want {
			return fmt.Errorf("images %q, want %q", got, want)
		}
		return nil
	})

	// A /scale patch applies to the object as it is when written: a write
	// in between (a controller's status, a label) is no conflict, unless
	// the patch names the version it read.
	sc, err := cs.AppsV1().StatefulSets("default").GetScale(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().StatefulSets("default").Patch(ctx, "db", types.MergePatchType, []byte(`{"metadata":{"labels":{"touched":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().StatefulSets("default").Patch(ctx, "db", types.MergePatchType, []byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}, "scale"); err != nil {
		t.Fatalf("a /scale patch after another write: %v", err)
	}
	stale := fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"spec":{"replicas":3}}`, sc.ResourceVersion)
	if _, err := cs.AppsV1().StatefulSets("default").Patch(ctx, "db", types.MergePatchType, []byte(stale), metav1.PatchOptions{}, "scale"); !apierrors.IsConflict(err) {
		t.Fatalf("a /scale patch naming a stale resourceVersion: %v, want a conflict", err)
	}
}
