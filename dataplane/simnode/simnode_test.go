package simnode

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// TestSimulatedPodReportsWhatHarnessesMeasure: a pod bound to a simulated
// node gets what a kubelet reports and kube-burner's podLatency reads: the
// five conditions with transition times (PodScheduled kept as the binding
// wrote it), container statuses with state.running.startedAt (init
// containers terminated, sidecars running), and Pulled, Created and Started
// events from the kubelet of that node about each container.
func TestSimulatedPodReportsWhatHarnessesMeasure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewClientset()
	if _, err := Start(ctx, cs, Options{Prefix: "sim", Count: 1, LeaseRenewInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, "sim-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.PodCIDR = "10.244.0.0/24" // as node IPAM would
	if _, err := cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	scheduledAt := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "uid-p"},
		Spec: corev1.PodSpec{NodeName: "sim-0",
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1"},
				{Name: "side", Image: "busybox:1", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
			Containers: []corev1.Container{{Name: "app", Image: "pause:3.10"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: scheduledAt}}}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	var got *corev1.Pod
	poll(t, "pod Running", func() error {
		got, err = cs.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %q", got.Status.Phase)
		}
		return nil
	})
	conds := map[corev1.PodConditionType]corev1.PodCondition{}
	for _, c := range got.Status.Conditions {
		conds[c.Type] = c
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodReadyToStartContainers, corev1.PodInitialized,
		corev1.ContainersReady, corev1.PodReady} {
		c, ok := conds[ct]
		if !ok || c.Status != corev1.ConditionTrue || c.LastTransitionTime.IsZero() {
			t.Errorf("condition %s: %+v (present %v)", ct, c, ok)
		}
	}
	if at := conds[corev1.PodScheduled].LastTransitionTime; !at.Equal(&scheduledAt) {
		t.Errorf("PodScheduled moved from %v to %v: it is the scheduler's", scheduledAt, at)
	}
	if len(got.Status.ContainerStatuses) != 1 || got.Status.ContainerStatuses[0].State.Running == nil ||
		got.Status.ContainerStatuses[0].State.Running.StartedAt.IsZero() || !got.Status.ContainerStatuses[0].Ready {
		t.Errorf("container statuses: %+v", got.Status.ContainerStatuses)
	}
	inits := map[string]corev1.ContainerStatus{}
	for _, s := range got.Status.InitContainerStatuses {
		inits[s.Name] = s
	}
	if s := inits["init"]; s.State.Terminated == nil || s.State.Terminated.Reason != "Completed" || s.State.Terminated.ExitCode != 0 {
		t.Errorf("init container status: %+v", s)
	}
	if s := inits["side"]; s.State.Running == nil || s.State.Running.StartedAt.IsZero() || !s.Ready {
		t.Errorf("sidecar status: %+v", s)
	}

	want := map[string]bool{}
	for _, c := range []string{"spec.initContainers{init}", "spec.initContainers{side}", "spec.containers{app}"} {
		for _, r := range []string{"Pulled", "Created", "Started"} {
			want[r+" "+c] = true
		}
	}
	poll(t, "Pulled, Created and Started events", func() error {
		l, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var seen []string
		missing := map[string]bool{}
		for k := range want {
			missing[k] = true
		}
		for _, e := range l.Items {
			io := e.InvolvedObject
			seen = append(seen, e.Reason+" "+io.FieldPath)
			if io.Kind != "Pod" || io.Name != "p" || io.UID != "uid-p" || e.Source.Component != "kubelet" || e.Source.Host != "sim-0" ||
				e.FirstTimestamp.IsZero() || e.Type != corev1.EventTypeNormal {
				t.Fatalf("event %s %s: involvedObject %+v, source %+v, firstTimestamp %v, type %s", e.Reason, io.FieldPath, io, e.Source, e.FirstTimestamp, e.Type)
			}
			delete(missing, e.Reason+" "+io.FieldPath)
		}
		if len(missing) > 0 {
			sort.Strings(seen)
			return fmt.Errorf("missing %v; seen %s", keys(missing), strings.Join(seen, ", "))
		}
		return nil
	})
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func poll(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
