package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/petrel-project/petrel/test/cluster"
)

// readyWatcher follows the pods of app=<name> and remembers the fewest that
// were ready and not terminating at any moment after it started.
type readyWatcher struct {
	mu       sync.Mutex
	ready    map[string]bool
	minReady int
	started  bool
}

func watchReady(ctx context.Context, t *testing.T, s *cluster.Server, selector string) *readyWatcher {
	t.Helper()
	cs := s.Clientset()
	list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	w := &readyWatcher{ready: map[string]bool{}}
	for i := range list.Items {
		w.ready[list.Items[i].Name] = serving(&list.Items[i])
	}
	w.minReady = w.count()
	wi, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range wi.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			w.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(w.ready, pod.Name)
			} else {
				w.ready[pod.Name] = serving(pod)
			}
			w.minReady = min(w.minReady, w.count())
			w.mu.Unlock()
		}
	}()
	t.Cleanup(wi.Stop)
	return w
}

func serving(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (w *readyWatcher) count() int {
	n := 0
	for _, r := range w.ready {
		if r {
			n++
		}
	}
	return n
}

func (w *readyWatcher) min() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minReady
}

// TestDeploymentRollouts runs Deployments the way users do, with kubectl's
// create, scale, set image, rollout status/history/undo/pause/resume, on
// simulated nodes; a watch checks that a rolling update never drops below
// replicas - maxUnavailable ready pods.
func TestDeploymentRollouts(t *testing.T) {
	s := cluster.StartServer(t)
	s.StartSimulatedNodes("dep", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := s.Kubectl(ctx, "", args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	rolledOut := func() {
		t.Helper()
		out := kubectl("rollout", "status", "deployment/web", "--timeout=60s")
		if !strings.Contains(out, "successfully rolled out") {
			t.Fatalf("rollout status: %s", out)
		}
	}
	poll(t, "two nodes", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "nodes", "-o", "name")
		if err != nil || len(strings.Fields(out)) != 2 {
			return fmt.Errorf("nodes = %q (%v)", out, err)
		}
		return nil
	})

	kubectl("create", "deployment", "web", "--image=petrel.local/testserver:1", "--replicas=4")
	rolledOut()
	checkReportedAsKubernetesDoes(ctx, t, s, "app=web", "testserver")
	kubectl("scale", "deployment", "web", "--replicas=6")
	rolledOut()
	if out := kubectl("get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}/{.status.updatedReplicas}"); out != "6/6" {
		t.Fatalf("after scale up: %s", out)
	}
	kubectl("scale", "deployment", "web", "--replicas=4")
	rolledOut()

	// maxUnavailable 1 of 4: never fewer than 3 ready during the update.
	kubectl("patch", "deployment", "web", "-p", `{"spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":1}}}}`)
	rolledOut()
	w := watchReady(ctx, t, s, "app=web")
	kubectl("set", "image", "deployment/web", "testserver=petrel.local/testserver:2")
	rolledOut()
	if m := w.min(); m < 3 {
		t.Errorf("ready pods fell to %d during the rolling update, below replicas-maxUnavailable = 3", m)
	}
	images := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}")
	if strings.Count(images, "petrel.local/testserver:2") != 4 || strings.Contains(images, ":1 ") {
		t.Errorf("pods after the update run %q", images)
	}

	history := kubectl("rollout", "history", "deployment/web")
	if !strings.Contains(history, "1 ") || !strings.Contains(history, "2 ") {
		t.Errorf("rollout history:\n%s", history)
	}
	kubectl("rollout", "undo", "deployment/web")
	rolledOut()
	if img := kubectl("get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); img != "petrel.local/testserver:1" {
		t.Errorf("after undo the template runs %s", img)
	}
	if rev := kubectl("get", "deployment", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"); rev != "3" {
		t.Errorf("revision after undo = %q, want 3", rev)
	}

	// Paused: a template change waits; resume rolls it out.
	kubectl("rollout", "pause", "deployment/web")
	kubectl("set", "image", "deployment/web", "testserver=petrel.local/testserver:3")
	time.Sleep(2 * time.Second)
	if n := kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}"); strings.Contains(n, ":3") {
		t.Errorf("a paused deployment rolled out: %s", n)
	}
	kubectl("rollout", "resume", "deployment/web")
	rolledOut()
	poll(t, "resumed rollout done", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}")
		if err != nil || strings.Count(out, "petrel.local/testserver:3") != 4 || strings.Count(out, "petrel.local/") != 4 {
			return fmt.Errorf("pods run %q (%v)", out, err)
		}
		return nil
	})

	// Scaled while paused midway, a rollout keeps its split: the replicas
	// added are shared out in proportion to each ReplicaSet's size
	// (Kubernetes' proportional scaling). New pods that take 10 minutes to
	// count as available hold the rollout at its first step.
	kubectl("patch", "deployment", "web", "-p", `{"spec":{"minReadySeconds":600,"strategy":{"rollingUpdate":{"maxSurge":2,"maxUnavailable":0}}}}`)
	kubectl("scale", "deployment", "web", "--replicas=5")
	rolledOut()
	kubectl("scale", "deployment", "web", "--replicas=4")
	rolledOut()
	sizes := func() string {
		t.Helper()
		return kubectl("get", "rs", "-l", "app=web", "-o", `jsonpath={range .items[?(@.spec.replicas>0)]}{.spec.template.spec.containers[0].image}={.spec.replicas} {end}`)
	}
	kubectl("set", "image", "deployment/web", "testserver=petrel.local/testserver:4")
	poll(t, "first step of the rollout", 30*time.Second, func() error {
		if out := sizes(); !strings.Contains(out, "testserver:4=2 ") || !strings.Contains(out, "testserver:3=4 ") {
			return fmt.Errorf("replicasets %q", out)
		}
		return nil
	})
	kubectl("rollout", "pause", "deployment/web")
	kubectl("scale", "deployment", "web", "--replicas=8")
	// 8 + maxSurge 2 = 10 allowed, 4 more: 4·10/6 ≈ 7 old, 2·10/6 ≈ 3 new.
	poll(t, "proportional scaling", 30*time.Second, func() error {
		if out := sizes(); !strings.Contains(out, "testserver:4=3 ") || !strings.Contains(out, "testserver:3=7 ") {
			return fmt.Errorf("replicasets %q", out)
		}
		return nil
	})

	// A Deployment adopts an orphan ReplicaSet it selects and continues its
	// revision, as Kubernetes' does (a Deployment made over a ReplicaSet
	// made by hand, or by a Deployment deleted with orphan propagation).
	if out, err := s.Kubectl(ctx, `apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: legacy
  labels: {app: legacy}
  annotations: {deployment.kubernetes.io/revision: "41"}
spec:
  replicas: 2
  selector: {matchLabels: {app: legacy}}
  template:
    metadata: {labels: {app: legacy}}
    spec: {containers: [{name: testserver, image: "petrel.local/testserver:1"}]}
`, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	kubectl("create", "deployment", "legacy", "--image=petrel.local/testserver:2", "--replicas=2")
	poll(t, "the orphan adopted and the rollout past it", 60*time.Second, func() error {
		owner := kubectl("get", "rs", "legacy", "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.spec.replicas}")
		if owner != "Deployment/legacy/0" {
			return fmt.Errorf("ReplicaSet legacy: owner/replicas %q, want Deployment/legacy/0", owner)
		}
		if rev := kubectl("get", "deployment", "legacy", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"); rev != "42" {
			return fmt.Errorf("the Deployment's revision %q, want 42 (after the adopted 41)", rev)
		}
		return nil
	})
	out, err := s.Kubectl(ctx, "", "rollout", "status", "deployment/legacy", "--timeout=60s")
	if err != nil || !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("rollout status of legacy: %v %s", err, out)
	}
}

// checkReportedAsKubernetesDoes checks a running pod of the selector for
// what harnesses (kube-burner's podLatency, clusterloader2) read, through the
// real API server: the scheduler's Scheduled event as events.k8s.io/v1
// (eventTime, reportingController default-scheduler, action Binding), the
// node's PodReadyToStartContainers condition and running startedAt, and the
// kubelet's Pulled, Created and Started events about the container.
func checkReportedAsKubernetesDoes(ctx context.Context, t *testing.T, s *cluster.Server, selector, container string) {
	t.Helper()
	cs := s.Clientset()
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("pods of %s: %v (%d)", selector, err, len(pods.Items))
	}
	pod := pods.Items[0]
	ready := false
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReadyToStartContainers && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			ready = true
		}
	}
	if !ready {
		t.Errorf("%s has no PodReadyToStartContainers condition: %+v", pod.Name, pod.Status.Conditions)
	}
	if len(pod.Status.ContainerStatuses) == 0 || pod.Status.ContainerStatuses[0].State.Running == nil ||
		pod.Status.ContainerStatuses[0].State.Running.StartedAt.IsZero() {
		t.Errorf("%s has no running startedAt: %+v", pod.Name, pod.Status.ContainerStatuses)
	}
	poll(t, "the Scheduled and kubelet events of "+pod.Name, 30*time.Second, func() error {
		evs, err := cs.EventsV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=" + pod.Name})
		if err != nil {
			return err
		}
		scheduled := false
		kubelet := map[string]bool{}
		for _, e := range evs.Items {
			switch {
			case e.Reason == "Scheduled":
				if e.EventTime.IsZero() || e.ReportingController != "default-scheduler" || e.ReportingInstance == "" || e.Action != "Binding" ||
					e.Note != fmt.Sprintf("Successfully assigned default/%s to %s", pod.Name, pod.Spec.NodeName) {
					return fmt.Errorf("Scheduled event: eventTime %v, reporting %s/%s, action %q, note %q",
						e.EventTime, e.ReportingController, e.ReportingInstance, e.Action, e.Note)
				}
				scheduled = true
			case e.Regarding.FieldPath == "spec.containers{"+container+"}" && e.ReportingController == "kubelet" &&
				e.ReportingInstance == pod.Spec.NodeName:
				kubelet[e.Reason] = true
			}
		}
		if !scheduled || !kubelet["Pulled"] || !kubelet["Created"] || !kubelet["Started"] {
			return fmt.Errorf("Scheduled %v, kubelet events %v among %d", scheduled, kubelet, len(evs.Items))
		}
		return nil
	})
}
