package pods

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/runtime"
	"github.com/petrel-project/petrel/test/bench"
	"github.com/petrel-project/petrel/test/images"
	"github.com/petrel-project/petrel/test/registry"
)

// lonePods times create → Running of n pods started one after another,
// each alone on the node (the one before deleted and gone first): the
// figure a user sees for `kubectl run`, without the contention of a batch.
func lonePods(ctx context.Context, cs kubernetes.Interface, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("lone-%03d", i)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": "lone"}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(int64(0)),
				Containers: []corev1.Container{{Name: "c", Image: images.TestServer, ImagePullPolicy: corev1.PullNever}}}}
		took, err := timeToRunning(ctx, cs, pod)
		if err != nil {
			return nil, err
		}
		out = append(out, took)
		if err := deleteAndWait(ctx, cs, name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// timeToRunning creates pod in default and returns how long it took to be
// seen Running on a watch opened before the create.
func timeToRunning(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) (time.Duration, error) {
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", pod.Name).String()})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	start := time.Now()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, fmt.Errorf("watch of pod %s ended", pod.Name)
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod && p.Status.Phase == corev1.PodRunning {
				return time.Since(start), nil
			}
		case <-timeout:
			return 0, fmt.Errorf("pod %s not Running after 2 minutes", pod.Name)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// deleteAndWait deletes the pod at once and waits until it is gone.
func deleteAndWait(ctx context.Context, cs kubernetes.Interface, name string) error {
	if err := cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
			return nil
		}
	}
	return fmt.Errorf("pod %s still there a minute after its deletion", name)
}

// pulledIn reads the pull time from the node's Pulled event ("Successfully
// pulled image "…" in 123ms (…)"), which times the pull and unpack alone.
var pulledIn = regexp.MustCompile(`Successfully pulled image "[^"]*" in (\S+) \(`)

// pullTimes pushes 2×rounds images of the test image with a layer of size
// random bytes each (no two share it) into a plain-HTTP registry on
// 127.0.0.1:port (the node was started with --insecure-registry for it),
// then in turns pulls one with `ctr image pull` on the node's containerd
// and has the node pull the next for a pod. Both pull and unpack into the
// same snapshotter; every pull is a whole one.
func pullTimes(ctx context.Context, u *bench.UpCluster, port, rounds int, size int64, progress func(string, ...interface{})) (ctrTook, petrelTook []time.Duration, err error) {
	reg, err := registry.Run(ctx, filepath.Join(u.Server.Dir, "registry"), port, registry.Options{})
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if serr := reg.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	progress("pushing %d images of %d MB into a local registry", 2*rounds, size>>20)
	for i := 0; i < rounds; i++ {
		for _, who := range []string{"ctr", "petrel"} {
			if err := reg.PushPadded(ctx, u.Archive, fmt.Sprintf("bench/pull-%s-%d:v1", who, i), size); err != nil {
				return nil, nil, err
			}
		}
	}
	for i := 0; i < rounds; i++ {
		ref := fmt.Sprintf("%s/bench/pull-ctr-%d:v1", reg.Host, i)
		start := time.Now()
		cmd := exec.CommandContext(ctx, "ctr", "--address", u.Runtime.Address, "--namespace", runtime.Namespace,
			"images", "pull", "--plain-http", "--snapshotter", runtime.Snapshotter, ref)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("ctr images pull %s: %v: %s", ref, err, out)
		}
		ctrTook = append(ctrTook, time.Since(start))

		name := fmt.Sprintf("pull-%03d", i)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": "pull"}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(int64(0)),
				Containers: []corev1.Container{{Name: "c", Image: fmt.Sprintf("%s/bench/pull-petrel-%d:v1", reg.Host, i),
					ImagePullPolicy: corev1.PullIfNotPresent}}}}
		if _, err := timeToRunning(ctx, u.Clientset, pod); err != nil {
			return nil, nil, err
		}
		took, err := pullTimeFromEvent(ctx, u.Clientset, name)
		if err != nil {
			return nil, nil, err
		}
		petrelTook = append(petrelTook, took)
		if err := deleteAndWait(ctx, u.Clientset, name); err != nil {
			return nil, nil, err
		}
		progress("pull %d/%d: ctr %v, petrel %v", i+1, rounds, ctrTook[i].Round(time.Millisecond), took)
	}
	return ctrTook, petrelTook, nil
}

// pullTimeFromEvent waits for the pod's Pulled event and reads its time.
func pullTimeFromEvent(ctx context.Context, cs kubernetes.Interface, pod string) (time.Duration, error) {
	sel := fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.name", pod), fields.OneTermEqualSelector("reason", "Pulled")).String()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		l, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return 0, err
		}
		for _, ev := range l.Items {
			if m := pulledIn.FindStringSubmatch(ev.Message); m != nil {
				return time.ParseDuration(m[1])
			}
			return 0, fmt.Errorf("pod %s: the image was not pulled: %s", pod, ev.Message)
		}
	}
	return 0, fmt.Errorf("pod %s: no Pulled event within 30 s", pod)
}
