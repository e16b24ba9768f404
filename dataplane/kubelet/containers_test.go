package kubelet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/petrel-project/petrel/dataplane/runtime"
)

// untouchable is a container whose every use panics (its interface is nil).
type untouchable struct{ containerd.Container }

// TestUnknownStateDecidesNothing: when containerd cannot say how a
// container is (a busy shim), the kubelet neither restarts nor reports it
// differently; it looks again.
func TestUnknownStateDecidesNothing(t *testing.T) {
	k := &Kubelet{}
	c := &corev1.Container{Name: "web"}
	running := corev1.ContainerStatus{Name: "web", RestartCount: 2, Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1"},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{*c}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{running}}}
	ps := &podState{containers: map[string]*containerRecord{}, probes: map[string]*prober{}}
	unknown := observed{ctr: untouchable{}, labels: map[string]string{labelRestarts: "2"}, err: errors.New("shim busy")}

	if wait := k.ensureContainer(context.Background(), pod, ps, sandbox{}, nil, c, unknown, corev1.RestartPolicyAlways); wait != time.Second {
		t.Fatalf("ensureContainer waits %v, want a second before looking again", wait)
	}
	if r := ps.record("web"); r.restarts != 0 || r.lastTerm != nil || r.failedStart != nil {
		t.Fatalf("the container's record changed: %+v", r)
	}
	got := k.containerStatus(context.Background(), pod, ps, sandbox{}, c, map[string]observed{"web": unknown}, regularContainer)
	if got.RestartCount != 2 || got.State.Running == nil || !got.Ready {
		t.Fatalf("status %+v, want the API's last word (running, ready, 2 restarts)", got)
	}
}

// taskless is a container whose task is gone (deleted after it was
// killed): containerd answers NotFound for its task. It records deletes.
type taskless struct {
	containerd.Container
	id      string
	deleted int
}

func (c *taskless) ID() string { return c.id }
func (c *taskless) Task(context.Context, cio.Attach) (containerd.Task, error) {
	return nil, fmt.Errorf("no running task found: task %s not found: %w", c.id, errdefs.ErrNotFound)
}
func (c *taskless) Delete(context.Context, ...containerd.DeleteOpts) error { c.deleted++; return nil }
func (c *taskless) Image(context.Context) (containerd.Image, error) {
	return nil, errors.New("no image in this test")
}

// TestRunWithoutTaskIsARestart: a container that ran and whose task is gone
// (a liveness kill deleted it) ended; it is restarted as a counted restart,
// with its run as lastState, after the back-off, never at once as a
// container that was created but never started.
func TestRunWithoutTaskIsARestart(t *testing.T) {
	var pulls int
	k := &Kubelet{cfg: Config{DataDir: t.TempDir()}, recorder: record.NewFakeRecorder(100),
		image: func(context.Context, *corev1.Pod, *corev1.Container) (containerd.Image, error) {
			pulls++
			return nil, errors.New("no images in this test")
		}}
	c := &corev1.Container{Name: "sleeper", Image: "petrel.local/testserver:1"}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{*c}}}
	ps := &podState{containers: map[string]*containerRecord{}, probes: map[string]*prober{}}
	// The second run (restart 1) was killed 2 s after it started; the
	// back-off after one restart is 10 s.
	rec := ps.record("sleeper")
	rec.restarts, rec.backoff = 1, backoffInitial
	ctr := &taskless{id: "u1-sleeper-1"}
	started := time.Now().Add(-2 * time.Second).UTC().Format(time.RFC3339Nano)
	o := observed{ctr: ctr, labels: map[string]string{labelRestarts: "1", labelStartedAt: started}}
	var err error
	if o.state, err = runtime.State(context.Background(), ctr); err != nil {
		t.Fatalf("a container without a task: %v", err)
	}
	o.running, o.exited = o.state.Running, o.state.Exists && !o.state.Running

	wait := k.ensureContainer(context.Background(), pod, ps, sandbox{}, nil, c, o, corev1.RestartPolicyAlways)
	if ctr.deleted != 0 || pulls != 0 || rec.restarts != 1 {
		t.Fatalf("restarted at once (deleted %d, start attempts %d, restarts %d), want a back-off", ctr.deleted, pulls, rec.restarts)
	}
	if wait < 5*time.Second || wait > backoffInitial {
		t.Fatalf("looks again in %v, want the rest of the %v back-off", wait, backoffInitial)
	}
	cs := k.containerStatus(context.Background(), pod, ps, sandbox{}, c, map[string]observed{"sleeper": o}, regularContainer)
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" || cs.RestartCount != 1 ||
		cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ContainerID != "containerd://u1-sleeper-1" {
		t.Fatalf("status %+v, want CrashLoopBackOff with the killed run as lastState", cs)
	}

	// Once the back-off is over it is restarted, and counted.
	rec.nextStart = time.Now().Add(-time.Second)
	k.ensureContainer(context.Background(), pod, ps, sandbox{}, nil, c, o, corev1.RestartPolicyAlways)
	if ctr.deleted != 1 || pulls != 1 || rec.restarts != 2 || rec.lastTerm == nil || rec.lastTerm.ContainerID != "containerd://u1-sleeper-1" {
		t.Fatalf("after the back-off: deleted %d, start attempts %d, restarts %d, lastTerm %+v", ctr.deleted, pulls, rec.restarts, rec.lastTerm)
	}
	if rec.backoff != 2*backoffInitial {
		t.Fatalf("back-off after the second restart %v, want %v", rec.backoff, 2*backoffInitial)
	}
}

// TestImagePullBacksOff: a failed pull is ErrImagePull, saying what to do
// without a registry; syncs within the back-off (10 s doubling to 5 min)
// do not pull again and report ImagePullBackOff.
func TestImagePullBacksOff(t *testing.T) {
	var pulls int
	k := &Kubelet{cfg: Config{DataDir: t.TempDir()}, recorder: record.NewFakeRecorder(100),
		image: func(_ context.Context, _ *corev1.Pod, c *corev1.Container) (containerd.Image, error) {
			ref := c.Image
			pulls++
			return nil, fmt.Errorf("pull docker.io/library/%s: dial tcp: lookup registry-1.docker.io: no such host (%s)", ref, runtime.PullHint)
		}}
	c := &corev1.Container{Name: "web", Image: "nginx:1.27", ImagePullPolicy: corev1.PullIfNotPresent}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u2"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{*c}}}
	ps := &podState{containers: map[string]*containerRecord{}, probes: map[string]*prober{}}
	ctx := context.Background()
	status := func() *corev1.ContainerStateWaiting {
		return k.containerStatus(ctx, pod, ps, sandbox{}, c, map[string]observed{"web": {}}, regularContainer).State.Waiting
	}

	wait := k.ensureContainer(ctx, pod, ps, sandbox{}, nil, c, observed{}, corev1.RestartPolicyAlways)
	if w := status(); pulls != 1 || w == nil || w.Reason != "ErrImagePull" || !strings.Contains(w.Message, "petrelctl image import") {
		t.Fatalf("after %d pulls: waiting %+v, want ErrImagePull saying how to import the image", pulls, w)
	}
	if wait < 5*time.Second || wait > backoffInitial {
		t.Fatalf("looks again in %v, want the %v back-off", wait, backoffInitial)
	}
	for range 5 {
		k.ensureContainer(ctx, pod, ps, sandbox{}, nil, c, observed{}, corev1.RestartPolicyAlways)
	}
	if w := status(); pulls != 1 || w == nil || w.Reason != "ImagePullBackOff" || !strings.Contains(w.Message, "nginx:1.27") {
		t.Fatalf("%d pulls within the back-off, waiting %+v; want 1 and ImagePullBackOff", pulls, w)
	}
	// Once it is over: one pull, then twice the wait.
	ps.record("web").retryAt = time.Now().Add(-time.Second)
	wait = k.ensureContainer(ctx, pod, ps, sandbox{}, nil, c, observed{}, corev1.RestartPolicyAlways)
	if pulls != 2 || wait < backoffInitial+5*time.Second || wait > 2*backoffInitial {
		t.Fatalf("after the back-off: %d pulls, next in %v; want 2 and %v", pulls, wait, 2*backoffInitial)
	}
}
