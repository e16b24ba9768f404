// Package kubelet runs the pods bound to this node on containerd: a pod
// sync loop (one sync at a time per pod), admission (a pod whose host ports
// an admitted pod holds is refused), the pod's network namespace and
// address through libcni, its volumes and files, its containers with crun
// or runc as its RuntimeClass says (no pause container: every container
// joins the namespace the kubelet made), its images through package
// imagepull, restarts with back-off, probes, graceful termination, and the pod's
// status as Kubernetes reports it. What it has on the machine is recorded
// under the data directory and labelled in containerd, so a restarted node
// adopts running pods and cleans up after pods deleted while it was down.
package kubelet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/containerlog"
	"github.com/petrel-project/petrel/dataplane/imagepull"
	"github.com/petrel-project/petrel/dataplane/kubelet/netns"
	"github.com/petrel-project/petrel/dataplane/kubelet/podvolume"
	"github.com/petrel-project/petrel/dataplane/runtime"
)

// Labels on containerd containers that tie them to their pod.
const (
	labelPodUID       = "petrel.io/pod-uid"
	labelPodName      = "petrel.io/pod-name"
	labelPodNamespace = "petrel.io/pod-namespace"
	labelContainer    = "petrel.io/container"
	labelRestarts     = "petrel.io/restart-count"
	labelStartedAt    = "petrel.io/started-at"
	labelOOM          = "petrel.io/oom-killed"
	labelLog          = "petrel.io/log-path"
)

// Config configures the kubelet.
type Config struct {
	NodeName string
	// DataDir holds pods/<uid>/ (files, volumes, logs, the sandbox record)
	// and cni/.
	DataDir string
	// CgroupRoot is the cgroup, relative to the hierarchies' roots, that
	// pods go in as pod<uid>/<container>.
	CgroupRoot string
	// PinDir is the node's bpffs directory, for petrel-cni's tc_pod attach.
	PinDir string
	// PodMTU is the MTU of pods' interfaces (0: petrel-cni's default, 1500);
	// less than the uplink's when the node may tunnel to other nodes.
	PodMTU int
	// ClusterDNS is the nameserver of ClusterFirst pods.
	ClusterDNS string
	// ClusterDomain is the cluster's DNS domain.
	ClusterDomain string
	// Workers bounds how many pods sync at once.
	Workers int
	// ResyncPeriod re-checks every pod even without an event.
	ResyncPeriod time.Duration
	// Registries says how images are pulled (mirrors, plain-HTTP
	// registries, extra certificate authorities).
	Registries imagepull.Registries
	// ImageGC removes unused images when the disk fills (Dir empty: off).
	ImageGC imagepull.GCPolicy
	// OCIRuntimes are the OCI runtimes installed and the default one;
	// a pod's RuntimeClass handler picks another.
	OCIRuntimes runtime.OCIRuntimes
}

// Kubelet runs this node's pods.
type Kubelet struct {
	cfg         Config
	client      kubernetes.Interface
	runtime     *containerd.Client
	network     *network
	recorder    record.EventRecorder
	queue       workqueue.TypedRateLimitingInterface[string]
	pods        cache.Indexer
	services    corelisters.ServiceLister
	hostIP      string
	allocatable corev1.ResourceList
	// loggerPath is this binary under containerlog.LoggerName.
	loggerPath string

	mu    sync.Mutex
	state map[string]*podState // by pod UID

	// image finds a container's image, pulling it when allowed, and
	// teardownPod removes what a pod has on the node: containerd's and the
	// machine's, which unit tests stand in for.
	image       func(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (containerd.Image, error)
	teardownPod func(ctx context.Context, uid string, pod *corev1.Pod, grace time.Duration) error
	// puller gets images from registries (nil: no registry settings could
	// be read, and pulls go through containerd's defaults).
	puller *imagepull.Puller
}

// podState is what the kubelet remembers of a pod between syncs.
type podState struct {
	containers map[string]*containerRecord
	probes     map[string]*prober
	// terminating is set while a goroutine stops the pod's containers.
	terminating bool
	// stopped is set once the containers of a finished or deleted pod are
	// gone and its network released.
	stopped bool
	// admitted is set once the node has taken the pod on, rejected once it
	// refused it (k.mu).
	admitted, rejected bool
	// tokens are the service account tokens projected into the pod (k.mu).
	tokens map[string]projectedToken
	// teardownBackoff and teardownAt pace a teardown that keeps failing
	// (k.mu): informer updates and resyncs ask for the pod far more often.
	teardownBackoff time.Duration
	teardownAt      time.Time
}

// Teardown back-off: a pod whose removal fails (a namespace mount that will
// not go, containerd busy) is tried again after 1 s doubling to 5 min.
const (
	teardownBackoffInitial = time.Second
	teardownBackoffMax     = 5 * time.Minute
)

// tryTeardown removes a gone or finished pod (named what in logs) unless its
// back-off holds it, and returns how long until it should be tried again
// (0 once it is done).
func (k *Kubelet) tryTeardown(ctx context.Context, ps *podState, uid string, pod *corev1.Pod, what string) time.Duration {
	k.mu.Lock()
	wait := time.Until(ps.teardownAt)
	k.mu.Unlock()
	if wait > 0 {
		return wait
	}
	return k.teardownDone(ps, what, k.teardownPod(ctx, uid, pod, 0))
}

// teardownDone records how a teardown went and returns how long until the
// next try when it failed.
func (k *Kubelet) teardownDone(ps *podState, what string, err error) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		ps.teardownBackoff, ps.teardownAt = 0, time.Time{}
		return 0
	}
	if ps.teardownBackoff == 0 {
		ps.teardownBackoff = teardownBackoffInitial
	} else {
		ps.teardownBackoff = min(2*ps.teardownBackoff, teardownBackoffMax)
	}
	ps.teardownAt = time.Now().Add(ps.teardownBackoff)
	slog.Warn("kubelet: pod teardown failed; trying again later", "pod", what, "in", ps.teardownBackoff, "err", err)
	return ps.teardownBackoff
}

func (k *Kubelet) podState(uid string) *podState {
	k.mu.Lock()
	defer k.mu.Unlock()
	ps := k.state[uid]
	if ps == nil {
		ps = &podState{containers: map[string]*containerRecord{}, probes: map[string]*prober{}}
		k.state[uid] = ps
	}
	return ps
}

// New makes a kubelet; Run starts it.
func New(cfg Config, client kubernetes.Interface, rt *containerd.Client, hostIP string, allocatable corev1.ResourceList) *Kubelet {
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	if cfg.ResyncPeriod == 0 {
		cfg.ResyncPeriod = 10 * time.Second
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	k := &Kubelet{cfg: cfg, client: client, runtime: rt, hostIP: hostIP, allocatable: allocatable,
		recorder: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName}),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubelet"}),
		state: map[string]*podState{}}
	k.image = func(ctx context.Context, _ *corev1.Pod, c *corev1.Container) (containerd.Image, error) {
		return runtime.EnsureImage(ctx, k.runtime, c.Image, c.ImagePullPolicy != corev1.PullNever)
	}
	k.newPuller()
	k.teardownPod = k.teardown
	return k
}

// Run waits for the node's podCIDR, then syncs pods until ctx ends. It
// returns once the pods known at start have been looked at.
func (k *Kubelet) Run(ctx context.Context) error {
	cidr, err := k.waitPodCIDR(ctx)
	if err != nil {
		return err
	}
	if k.network, err = newNetwork(k.cfg.DataDir, cidr, k.cfg.PinDir, k.cfg.PodMTU); err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	if err := netns.PrepareDir(); err != nil {
		return fmt.Errorf("pods' network namespaces: %w", err)
	}
	if k.loggerPath, err = linkHelper(filepath.Join(k.cfg.DataDir, "bin"), containerlog.LoggerName); err != nil {
		return fmt.Errorf("container logger: %w", err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	if err := inf.AddIndexers(cache.Indexers{"uid": func(obj any) ([]string, error) {
		return []string{string(obj.(*corev1.Pod).UID)}, nil
	}}); err != nil {
		return err
	}
	k.pods = inf.GetIndexer()
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok {
			k.queue.Add(string(p.UID))
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue}); err != nil {
		return err
	}
	// Every Service, for the pods' service environment variables.
	svcFactory := informers.NewSharedInformerFactory(k.client, 0)
	svcInf := svcFactory.Core().V1().Services()
	k.services = svcInf.Lister()
	svcSynced := svcInf.Informer().HasSynced
	factory.Start(ctx.Done())
	svcFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced, svcSynced) {
		return ctx.Err()
	}
	// Pods that left the API while the node was down still have
	// directories and containers here: their syncs find no pod and clean up.
	for _, uid := range k.localPods(ctx) {
		k.queue.Add(uid)
	}
	go k.watchTasks(ctx)
	if k.puller != nil {
		go k.puller.RunGC(ctx, k.cfg.ImageGC)
	}
	go wait.UntilWithContext(ctx, func(context.Context) {
		for _, obj := range k.pods.List() {
			k.queue.Add(string(obj.(*corev1.Pod).UID))
		}
	}, k.cfg.ResyncPeriod)
	for i := 0; i < k.cfg.Workers; i++ {
		go wait.UntilWithContext(ctx, k.worker, time.Second)
	}
	go func() {
		<-ctx.Done()
		k.queue.ShutDown()
		k.mu.Lock()
		for _, ps := range k.state {
			for _, p := range ps.probes {
				p.stop()
			}
		}
		k.mu.Unlock()
	}()
	return nil
}

func (k *Kubelet) waitPodCIDR(ctx context.Context) (string, error) {
	var cidr string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		cidr = n.Spec.PodCIDR
		return cidr != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("node %s got no podCIDR (is the server's --cluster-cidr full?): %w", k.cfg.NodeName, err)
	}
	return cidr, nil
}

// localPods are the UIDs the node has something of: pod directories and
// labelled containers.
func (k *Kubelet) localPods(ctx context.Context) []string {
	seen := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(k.cfg.DataDir, "pods"))
	for _, e := range entries {
		seen[e.Name()] = true
	}
	if ctrs, err := k.runtime.Containers(ctx); err == nil {
		for _, c := range ctrs {
			if labels, err := labelsOf(ctx, c); err == nil && labels[labelPodUID] != "" {
				seen[labels[labelPodUID]] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for uid := range seen {
		out = append(out, uid)
	}
	return out
}

// watchTasks turns containerd's exit and OOM events into pod syncs.
func (k *Kubelet) watchTasks(ctx context.Context) {
	for ctx.Err() == nil {
		envelopes, errs := k.runtime.Subscribe(ctx, `topic=="/tasks/exit"`, `topic=="/tasks/oom"`)
	loop:
		for {
			select {
			case env := <-envelopes:
				ev, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				var id string
				switch e := ev.(type) {
				case *apievents.TaskExit:
					id = e.ContainerID
				case *apievents.TaskOOM:
					id = e.ContainerID
					k.markOOM(ctx, id)
				}
				if uid, ok := podUIDOf(id); ok {
					k.queue.Add(uid)
				}
			case err := <-errs:
				if ctx.Err() == nil {
					slog.Warn("kubelet: containerd event stream broke; resubscribing", "err", err)
					time.Sleep(time.Second)
				}
				break loop
			}
		}
	}
}

func (k *Kubelet) markOOM(ctx context.Context, id string) {
	ctr, err := k.runtime.LoadContainer(ctx, id)
	if err == nil {
		_, _ = ctr.SetLabels(ctx, map[string]string{labelOOM: "true"})
	}
}

// maxContainerID is the longest identifier containerd accepts.
const maxContainerID = 76

// containerID names one attempt to run a pod's container in containerd:
// <pod uid>-<name>-<restarts>-<nonce>. The nonce makes every attempt's name
// new, as the CRI's random ids are, even when a start is tried again
// without a restart to count: the shim of the attempt before may still be
// clearing its state under the old name. A long container name (Kubernetes
// allows 63 characters) is cut to fit; the labels carry it whole.
func containerID(uid, name string, restarts int32) string {
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	tail := fmt.Sprintf("-%d-%s", restarts, hex.EncodeToString(nonce[:]))
	if room := maxContainerID - len(uid) - 1 - len(tail); len(name) > room {
		// Separators may not end a part of an identifier.
		name = strings.TrimRight(name[:room], "-._")
	}
	return uid + "-" + name + tail
}

func podUIDOf(id string) (string, bool) {
	if len(id) < 38 || id[36] != '-' {
		return "", false
	}
	return id[:36], true
}

func (k *Kubelet) worker(ctx context.Context) {
	for {
		uid, quit := k.queue.Get()
		if quit {
			return
		}
		requeue, err := k.sync(ctx, uid)
		switch {
		case err != nil && ctx.Err() == nil:
			slog.Warn("kubelet: pod sync failed; retrying", "uid", uid, "err", err)
			k.queue.AddRateLimited(uid)
		case requeue > 0:
			k.queue.Forget(uid)
			k.queue.AddAfter(uid, requeue)
		default:
			k.queue.Forget(uid)
		}
		k.queue.Done(uid)
	}
}

// podByUID is the informer's pod, or nil when the API has no such pod.
func (k *Kubelet) podByUID(uid string) *corev1.Pod {
	objs, _ := k.pods.ByIndex("uid", uid)
	if len(objs) == 0 {
		return nil
	}
	return objs[0].(*corev1.Pod)
}

func (k *Kubelet) podDir(uid string) string { return filepath.Join(k.cfg.DataDir, "pods", uid) }

// sync brings one pod's containers to what its spec and phase ask; it
// returns how soon to look again when something is pending.
func (k *Kubelet) sync(ctx context.Context, uid string) (time.Duration, error) {
	pod := k.podByUID(uid)
	ps := k.podState(uid)
	switch {
	case pod == nil:
		if wait := k.tryTeardown(ctx, ps, uid, nil, uid); wait > 0 {
			return wait, nil
		}
		k.mu.Lock()
		delete(k.state, uid)
		k.mu.Unlock()
		return 0, nil
	case pod.DeletionTimestamp != nil:
		return k.terminate(ctx, pod, ps), nil
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		if !ps.stopped {
			if wait := k.tryTeardown(ctx, ps, uid, pod, pod.Namespace+"/"+pod.Name); wait > 0 {
				return wait, nil
			}
			ps.stopped = true
		}
		return 0, nil
	}
	if ok, err := k.admit(ctx, pod, ps); !ok || err != nil {
		return 0, err
	}
	left, hasDeadline := activeDeadlineLeft(pod, time.Now())
	if hasDeadline && left <= 0 {
		k.recorder.Event(pod, corev1.EventTypeWarning, deadlineReason, deadlineMessage)
		return 0, k.failPod(ctx, pod, deadlineReason, deadlineMessage)
	}
	requeue, err := k.syncRunning(ctx, pod, ps)
	if hasDeadline && (requeue == 0 || left < requeue) {
		requeue = left
	}
	return requeue, err
}

// terminate stops a deleted pod's containers within its grace period (in
// the background, not holding a worker), releases everything and then
// removes the pod from the API. It returns how long until the pod should be
// looked at again while a failed teardown backs off.
//
// The background teardown reports to its own back-off rather than the
// queue's rate limiter: the worker forgets the pod as soon as terminate
// returns, which reset the limiter and made a failing teardown run again
// every 200 ms and at each informer event.
func (k *Kubelet) terminate(ctx context.Context, pod *corev1.Pod, ps *podState) time.Duration {
	k.mu.Lock()
	if ps.terminating {
		k.mu.Unlock()
		return 0
	}
	if wait := time.Until(ps.teardownAt); wait > 0 {
		k.mu.Unlock()
		return wait
	}
	ps.terminating = true
	k.mu.Unlock()
	grace := 30 * time.Second
	if pod.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	go func() {
		err := k.teardownPod(ctx, string(pod.UID), pod, grace)
		if err == nil {
			err = k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
				GracePeriodSeconds: ptr.To(int64(0)), Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				err = nil
			}
		}
		if ctx.Err() != nil {
			err = nil // stopping: the next node start takes over
		}
		wait := k.teardownDone(ps, pod.Namespace+"/"+pod.Name, err)
		k.mu.Lock()
		ps.terminating = false
		k.mu.Unlock()
		if wait > 0 {
			k.queue.AddAfter(string(pod.UID), wait)
		}
	}()
	return 0
}

// teardown stops and removes the pod's containers (preStop hooks first when
// the pod is known), its network and namespace, cgroups and directory.
func (k *Kubelet) teardown(ctx context.Context, uid string, pod *corev1.Pod, grace time.Duration) error {
	k.mu.Lock()
	if ps := k.state[uid]; ps != nil {
		for name, p := range ps.probes {
			p.stop()
			delete(ps.probes, name)
		}
	}
	k.mu.Unlock()
	ctrs, err := k.runtime.Containers(ctx, fmt.Sprintf(`labels."%s"=="%s"`, labelPodUID, uid))
	if err != nil {
		return fmt.Errorf("list the pod's containers: %w", err)
	}
	if pod != nil && grace > 0 {
		k.runPreStop(ctx, pod, grace)
	}
	var wg sync.WaitGroup
	ctrErrs := make([]error, len(ctrs))
	for i, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if pod != nil && grace > 0 {
				if labels, err := labelsOf(ctx, c); err == nil {
					if st, err := runtime.State(ctx, c); err == nil && st.Running {
						k.recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s", labels[labelContainer])
					}
				}
			}
			ctrErrs[i] = runtime.RemoveContainer(ctx, c, grace)
		}()
	}
	wg.Wait()
	if err := errors.Join(ctrErrs...); err != nil {
		return err
	}
	// With the containers gone, every other step is tried, whatever fails,
	// so that one stuck piece (a mount) does not keep the rest on the node.
	dir := k.podDir(uid)
	sb := sandbox{UID: uid, NetNS: netns.Path(uid)}
	if pod != nil {
		sb.Namespace, sb.Name = pod.Namespace, pod.Name
	}
	var errs []error
	if k.network != nil {
		errs = append(errs, k.network.del(ctx, sb))
	}
	errs = append(errs, netns.Remove(sb.NetNS),
		runtime.RemoveCgroup(filepath.Join(k.cfg.CgroupRoot, "pod"+uid)),
		podvolume.UnmountUnder(dir))
	if err := errors.Join(errs...); err != nil {
		// The pod's directory stays: it is how a restarted node finds the
		// pod to clean up after.
		return err
	}
	// A finished pod keeps its logs until it is deleted.
	if pod != nil && pod.DeletionTimestamp == nil {
		return nil
	}
	return os.RemoveAll(dir)
}

// Cleanup removes every pod the node has on the machine (containers,
// network, namespaces, cgroups, directories) without the API: what
// `petrel node --cleanup` does after the node has stopped.
func Cleanup(ctx context.Context, rt *containerd.Client, cfg Config) error {
	k := &Kubelet{cfg: cfg, runtime: rt, state: map[string]*podState{}}
	k.network, _ = loadNetwork(cfg.DataDir)
	var errs []error
	for _, uid := range k.localPods(ctx) {
		if err := k.teardown(ctx, uid, nil, 0); err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", uid, err))
		}
	}
	return errors.Join(errs...)
}
