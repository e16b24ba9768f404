// Package pods is the pods suite of petrelctl bench: pod startup on real
// containerd against ctr run and bare runc of the same image, and the
// memory of petrel up with a few pods.
package pods

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/runtime"
	"github.com/petrel-project/petrel/test/bench"
	"github.com/petrel-project/petrel/test/images"
)

// Options configure the pods suite.
type Options struct {
	Petrel string
	// Pods are started in batches of Batch, each batch once the one
	// before is Ready.
	Pods, Batch int
	// Idle is how many pods stay for the memory figure.
	Idle int
	// LonePods are started one after another on an otherwise idle node.
	LonePods int
	// Pulls is how many images ctr and the node each pull from a local
	// registry; each image is the test image with a PullMB layer.
	Pulls, PullMB int
	Progress      io.Writer
}

// Run measures pod startup on real containerd (create → Running and
// create → Ready), next to `ctr run` of the same image on the same
// containerd, and the memory of `petrel up` running a few pods.
func Run(ctx context.Context, o Options) (rep *bench.Report, err error) {
	progress := func(format string, args ...interface{}) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench pods: "+format+"\n", args...)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the pods suite runs containers: run it as root")
	}
	rep = bench.NewReport("pods")
	name := fmt.Sprintf("bench-%d", os.Getpid())
	ports, err := bench.FreePorts(2)
	if err != nil {
		return nil, err
	}
	registryPort := ports[1]
	u, err := bench.StartUpCluster(ctx, o.Petrel, name, fmt.Sprintf("169.254.23.%d", 1+ports[0]%250), progress,
		fmt.Sprintf("--insecure-registry=127.0.0.1:%d", registryPort))
	if err != nil {
		return nil, err
	}
	defer u.Stop(progress)
	sp, cs, rt := u.Server, u.Clientset, u.Runtime

	progress("baseline: ctr run of %d containers in batches of %d", o.Pods, o.Batch)
	base, err := ctrRuns(ctx, rt, o.Pods, o.Batch, "")
	if err != nil {
		return nil, err
	}

	progress("floor: runc run of %d busybox containers in batches of %d", o.Pods, o.Batch)
	floor, err := runcRuns(ctx, filepath.Join(sp.Dir, "runc"), o.Pods, o.Batch)
	if err != nil {
		return nil, err
	}
	// The same two with crun, where it is installed: what the node's
	// default runtime costs before Petrel adds anything.
	var crunBase, crunFloor []time.Duration
	if _, err := exec.LookPath("crun"); err == nil {
		progress("floor: crun run of %d busybox containers in batches of %d", o.Pods, o.Batch)
		if crunFloor, err = ociRuns(ctx, "crun", filepath.Join(sp.Dir, "crun"), o.Pods, o.Batch); err != nil {
			return nil, err
		}
		progress("baseline: ctr run --runc-binary crun of %d containers in batches of %d", o.Pods, o.Batch)
		if crunBase, err = ctrRuns(ctx, rt, o.Pods, o.Batch, "crun"); err != nil {
			return nil, err
		}
	}

	progress("waiting for the node to take pods")
	if err := bench.WaitNodes(ctx, cs, 1); err != nil {
		return nil, err
	}
	progress("pods: %d in batches of %d", o.Pods, o.Batch)
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "bench=pods"})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	created, running, ready := map[string]time.Time{}, map[string]time.Duration{}, map[string]time.Duration{}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			now := time.Now()
			mu.Lock()
			t0, ok := created[p.Name]
			if ok {
				if _, seen := running[p.Name]; !seen && p.Status.Phase == corev1.PodRunning {
					running[p.Name] = now.Sub(t0)
				}
				if _, seen := ready[p.Name]; !seen && bench.PodReady(p) {
					ready[p.Name] = now.Sub(t0)
				}
			}
			mu.Unlock()
		}
	}()
	// startPods starts the pods named prefix-NNN in batches, with the
	// RuntimeClass class ("" for the node's default runtime).
	startPods := func(prefix, class string) error {
		for b := 0; b*o.Batch < o.Pods; b++ {
			var names []string
			for i := b * o.Batch; i < min((b+1)*o.Batch, o.Pods); i++ {
				n := fmt.Sprintf("%s-%03d", prefix, i)
				names = append(names, n)
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"bench": "pods"}},
					Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To(int64(1)),
						Containers: []corev1.Container{{Name: "c", Image: images.TestServer, ImagePullPolicy: corev1.PullNever}}}}
				if class != "" {
					pod.Spec.RuntimeClassName = &class
				}
				mu.Lock()
				created[n] = time.Now()
				mu.Unlock()
				if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					return err
				}
			}
			deadline := time.Now().Add(2 * time.Minute)
			for {
				mu.Lock()
				done := 0
				for _, n := range names {
					if _, ok := ready[n]; ok {
						done++
					}
				}
				mu.Unlock()
				if done == len(names) {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("batch %d: only %d of %d pods Ready after 2 minutes", b, done, len(names))
				}
				time.Sleep(20 * time.Millisecond)
			}
			progress("batch %d/%d ready", b+1, (o.Pods+o.Batch-1)/o.Batch)
		}
		return nil
	}
	// times are the create → Running and → Ready latencies of the pods
	// named prefix-NNN.
	times := func(prefix string) (toRunning, toReady []time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		for n := range created {
			if strings.HasPrefix(n, prefix+"-") {
				toRunning = append(toRunning, running[n])
				toReady = append(toReady, ready[n])
			}
		}
		return toRunning, toReady
	}
	if crunBase != nil {
		// Pods with runc first, then gone, so that the default run below
		// has the node to itself as before.
		progress("pods with runtimeClassName runc: %d in batches of %d", o.Pods, o.Batch)
		if err := startPods("runcpod", "runc"); err != nil {
			return nil, err
		}
		for i := 0; i < o.Pods; i++ {
			_ = cs.CoreV1().Pods("default").Delete(ctx, fmt.Sprintf("runcpod-%03d", i), metav1.DeleteOptions{})
		}
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "bench=pods"}); err == nil && len(l.Items) == 0 {
				break
			}
		}
		progress("pods with the node's default runtime: %d in batches of %d", o.Pods, o.Batch)
	}
	if err := startPods("bench", ""); err != nil {
		return nil, err
	}
	toRunning, toReady := times("bench")
	rep.Add("pod create → Running p50", "ms", bench.Millis(bench.Percentile(toRunning, 50)), "lower", bench.Goal(300))
	rep.Add("pod create → Running p99", "ms", bench.Millis(bench.Percentile(toRunning, 99)), "lower", bench.Goal(1000))
	rep.AddRatio("pod create → Ready p50", "ms", bench.Millis(bench.Percentile(toReady, 50)), "ctr run p50", bench.Millis(bench.Percentile(base, 50)), "lower", 0)
	rep.AddRatio("pod create → Ready p99", "ms", bench.Millis(bench.Percentile(toReady, 99)), "ctr run p99", bench.Millis(bench.Percentile(base, 99)), "lower", 0)
	// The same goals held against bare runc: what any pod start with runc
	// costs here before containerd, the network or the API add anything.
	rep.Add("runc run -d p50 (the floor: no containerd, no pod)", "ms", bench.Millis(bench.Percentile(floor, 50)), "lower", bench.Goal(300))
	rep.Add("runc run -d p99 (the floor: no containerd, no pod)", "ms", bench.Millis(bench.Percentile(floor, 99)), "lower", bench.Goal(1000))
	if crunBase != nil {
		_, runcReady := times("runcpod")
		rep.AddRatio("pod create → Ready p50, runtimeClassName runc", "ms", bench.Millis(bench.Percentile(runcReady, 50)), "ctr run p50 (runc)", bench.Millis(bench.Percentile(base, 50)), "lower", 0)
		rep.AddRatio("pod create → Ready p50 with crun (the node's default) / ctr run with crun", "ms", bench.Millis(bench.Percentile(toReady, 50)), "ctr run --runc-binary crun p50", bench.Millis(bench.Percentile(crunBase, 50)), "lower", 1.0)
		rep.AddRatio("pod create → Ready p50, default runtime", "ms", bench.Millis(bench.Percentile(toReady, 50)), "pods with runc p50", bench.Millis(bench.Percentile(runcReady, 50)), "lower", 0)
		rep.AddRatio("ctr run --runc-binary crun p50", "ms", bench.Millis(bench.Percentile(crunBase, 50)), "ctr run p50 (runc)", bench.Millis(bench.Percentile(base, 50)), "lower", 0)
		rep.AddRatio("crun run -d p50 (no containerd, no pod)", "ms", bench.Millis(bench.Percentile(crunFloor, 50)), "runc run -d p50", bench.Millis(bench.Percentile(floor, 50)), "lower", 0)
		rep.Add("crun run -d p99 (no containerd, no pod)", "ms", bench.Millis(bench.Percentile(crunFloor, 99)), "lower", nil)
	}

	progress("deleting all but %d pods for the memory figure", o.Idle)
	for i := o.Idle; i < o.Pods; i++ {
		_ = cs.CoreV1().Pods("default").Delete(ctx, fmt.Sprintf("bench-%03d", i), metav1.DeleteOptions{})
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "bench=pods"})
		if err == nil && len(l.Items) <= o.Idle {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(10 * time.Second)
	rss, err := bench.RSSMB(sp.Cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	rep.Add(fmt.Sprintf("petrel up RSS with %d pods (containerd apart)", o.Idle), "MB", rss, "lower", bench.Goal(150))
	// The rest of RSS is the binary's code and data mapped from the page
	// cache, shared and reclaimable (and, with large folios, mapped 2 MB
	// at a time): the private memory is the anonymous part.
	anon, err := bench.ProcStatusMB(sp.Cmd.Process.Pid, "RssAnon")
	if err != nil {
		return nil, err
	}
	rep.Add(fmt.Sprintf("petrel up private (anonymous) memory with %d pods", o.Idle), "MB", anon, "lower", nil)
	progress("deleting the last pods")
	for i := 0; i < o.Idle; i++ {
		_ = cs.CoreV1().Pods("default").Delete(ctx, fmt.Sprintf("bench-%03d", i), metav1.DeleteOptions{})
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "bench=pods"}); err == nil && len(l.Items) == 0 {
			break
		}
	}
	if o.LonePods > 0 {
		progress("lone pods: %d, one after another", o.LonePods)
		lone, err := lonePods(ctx, cs, o.LonePods)
		if err != nil {
			return nil, err
		}
		rep.Add("lone pod create → Running p50", "ms", bench.Millis(bench.Percentile(lone, 50)), "lower", bench.Goal(250))
		rep.Add("lone pod create → Running p99", "ms", bench.Millis(bench.Percentile(lone, 99)), "lower", nil)
	}
	if o.Pulls > 0 {
		ctrTook, petrelTook, err := pullTimes(ctx, u, registryPort, o.Pulls, int64(o.PullMB)<<20, progress)
		if err != nil {
			return nil, err
		}
		rep.AddRatio(fmt.Sprintf("image pull of the test image + %d MB from a local registry, p50", o.PullMB), "ms",
			bench.Millis(bench.Percentile(petrelTook, 50)), "ctr image pull p50", bench.Millis(bench.Percentile(ctrTook, 50)), "lower", 1/1.2)
	}
	return rep, nil
}

// ctrRuns times `ctr run -d` of the test image (a shell that sleeps) on
// the node's containerd, batch by batch, then removes the containers.
func ctrRuns(ctx context.Context, rt *runtime.Containerd, n, batch int, binary string) ([]time.Duration, error) {
	var ids []string
	defer func() {
		for _, id := range ids {
			if c, err := rt.Client.LoadContainer(ctx, id); err == nil {
				_ = runtime.RemoveContainer(ctx, c, 0)
			}
		}
		_ = runtime.RemoveCgroup("petrel-bench-ctr")
	}()
	return startInBatches(n, batch, func(i int) (func() error, error) {
		id := fmt.Sprintf("bench-ctr%s-%d-%03d", binary, os.Getpid(), i)
		ids = append(ids, id)
		args := []string{"--address", rt.Address, "--namespace", runtime.Namespace, "run", "-d",
			"--snapshotter", runtime.Snapshotter, "--cgroup", "/petrel-bench-ctr/" + id}
		if binary != "" {
			args = append(args, "--runc-binary", binary)
		}
		args = append(args, images.TestServer, id, "sleep", "3600")
		return func() error {
			cmd := exec.CommandContext(ctx, "ctr", args...)
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("ctr run: %v: %s", err, b)
			}
			return nil
		}, nil
	})
}

// startInBatches times n starts, batch of them at a time: prepare(i) is
// called in turn (untimed) and gives the start to time; the starts of a
// batch run together, and a batch begins once the one before has returned.
// The first error ends it.
func startInBatches(n, batch int, prepare func(i int) (start func() error, err error)) ([]time.Duration, error) {
	var out []time.Duration
	for b := 0; b*batch < n; b++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		for i := b * batch; i < min((b+1)*batch, n); i++ {
			start, err := prepare(i)
			if err != nil {
				wg.Wait()
				return nil, err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				began := time.Now()
				err := start()
				took := time.Since(began)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out = append(out, took)
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return nil, firstErr
		}
	}
	return out, nil
}
