// Package simnode runs simulated nodes for control-plane scale tests, like
// kwok: each registers a Node, keeps its Lease, and reports the pods bound to
// it Running and Ready with an address from its podCIDR, without running
// anything, with the conditions, container statuses and events a kubelet
// gives (what harnesses such as kube-burner measure); pods being deleted are
// confirmed gone at once. They never stand in for a real node in a test of
// the node itself.
package simnode

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// SimulatedLabel marks simulated Nodes.
const SimulatedLabel = "node.petrel.io/simulated"

// Options say how many nodes to simulate and how big they are.
type Options struct {
	Prefix string // node names are <Prefix>-<i>
	Count  int
	CPU    string
	Memory string
	Pods   int
	// LeaseRenewInterval is how often each node's Lease is renewed.
	LeaseRenewInterval time.Duration
	// Events is the client events are written with; nil means the main
	// one. A client of its own keeps the kubelet events (three per
	// container) from spending the rate limit the status updates, which
	// harnesses time, need.
	Events kubernetes.Interface
}

// Simulator is a running set of simulated nodes.
type Simulator struct {
	client kubernetes.Interface
	opts   Options
	names  map[string]bool
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	queue  workqueue.TypedRateLimitingInterface[string]

	events    record.EventBroadcaster
	recorders map[string]record.EventRecorder // per node, as each node has its kubelet; read-only after Start

	mu  sync.Mutex
	ips map[string]map[netip.Addr]string // node → address → pod key
}

// Start registers the nodes and begins reporting their pods; it returns once
// all nodes exist.
func Start(ctx context.Context, cs kubernetes.Interface, opts Options) (*Simulator, error) {
	if opts.Count <= 0 {
		return nil, fmt.Errorf("simulate: count must be positive, not %d", opts.Count)
	}
	if opts.CPU == "" {
		opts.CPU = "32"
	}
	if opts.Memory == "" {
		opts.Memory = "256Gi"
	}
	if opts.Pods == 0 {
		opts.Pods = 110
	}
	if opts.LeaseRenewInterval == 0 {
		opts.LeaseRenewInterval = 10 * time.Second
	}
	s := &Simulator{client: cs, opts: opts, names: map[string]bool{}, ips: map[string]map[netip.Addr]string{},
		queue:     workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		events:    record.NewBroadcaster(record.WithContext(ctx)),
		recorders: map[string]record.EventRecorder{}}
	events := opts.Events
	if events == nil {
		events = cs
	}
	s.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: events.CoreV1().Events("")})
	go func() { <-ctx.Done(); s.events.Shutdown() }()
	for i := range opts.Count {
		name := fmt.Sprintf("%s-%d", opts.Prefix, i)
		s.names[name] = true
		s.recorders[name] = s.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: name})
		if err := s.register(ctx, name); err != nil {
			return nil, fmt.Errorf("register simulated node %s: %w", name, err)
		}
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	podInf, nodeInf := factory.Core().V1().Pods(), factory.Core().V1().Nodes()
	s.pods, s.nodes = podInf.Lister(), nodeInf.Lister()
	enqueue := func(obj interface{}) {
		if p, ok := obj.(*corev1.Pod); ok && s.names[p.Spec.NodeName] {
			s.queue.Add(p.Namespace + "/" + p.Name)
		}
	}
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
		DeleteFunc: func(obj interface{}) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				s.release(p)
			}
		},
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced, nodeInf.Informer().HasSynced) {
		return nil, fmt.Errorf("simulate: informers did not sync")
	}
	// Addresses given before a restart stay taken.
	pods, _ := s.pods.List(labels.Everything())
	for _, p := range pods {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil && s.names[p.Spec.NodeName] {
			if s.ips[p.Spec.NodeName] == nil {
				s.ips[p.Spec.NodeName] = map[netip.Addr]string{}
			}
			s.ips[p.Spec.NodeName][a] = p.Namespace + "/" + p.Name
		}
	}
	for range 4 {
		go wait.UntilWithContext(ctx, s.worker, time.Second)
	}
	go s.keepLeases(ctx)
	go func() { <-ctx.Done(); s.queue.ShutDown() }()
	return s, nil
}

func (s *Simulator) register(ctx context.Context, name string) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(s.opts.CPU),
		corev1.ResourceMemory: resource.MustParse(s.opts.Memory),
		corev1.ResourcePods:   *resource.NewQuantity(int64(s.opts.Pods), resource.DecimalSI),
	}
	nodes := s.client.CoreV1().Nodes()
	// Node IPAM may write the new Node between our create and status update.
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			n, err = nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64", SimulatedLabel: "true"}}},
				metav1.CreateOptions{})
		}
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status = corev1.NodeStatus{Capacity: capacity, Allocatable: capacity, Phase: corev1.NodeRunning,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "SimulatedNodeReady",
				Message: "simulated node: pods are reported running, nothing runs", LastHeartbeatTime: now, LastTransitionTime: now}},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.32.0-petrel-simulated", OperatingSystem: "linux", Architecture: "amd64"}}
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

func (s *Simulator) keepLeases(ctx context.Context) {
	leases := s.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for {
		for name := range s.names {
			now := metav1.NewMicroTime(time.Now())
			l, err := leases.Get(ctx, name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To(int32(40)), RenewTime: &now}}, metav1.CreateOptions{})
			case err == nil:
				l.Spec.RenewTime = &now
				_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			}
			if err != nil && ctx.Err() == nil {
				slog.Warn("simulated node: lease", "node", name, "err", err)
			}
			if n, err := s.nodes.Get(name); err == nil && !nodeReady(n) {
				if err := s.register(ctx, name); err != nil && ctx.Err() == nil {
					slog.Warn("simulated node: status", "node", name, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.LeaseRenewInterval):
		}
	}
}

func (s *Simulator) worker(ctx context.Context) {
	for {
		key, quit := s.queue.Get()
		if quit {
			return
		}
		if err := s.sync(ctx, key); err != nil {
			slog.Warn("simulated node: retrying", "pod", key, "err", err)
			s.queue.AddRateLimited(key)
		} else {
			s.queue.Forget(key)
		}
		s.queue.Done(key)
	}
}

func (s *Simulator) sync(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pod.DeletionTimestamp != nil {
		// A kubelet confirms deletion once containers are gone; none run here.
		err := s.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0)),
			Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return err
		}
		return nil
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	if pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" {
		return s.finish(ctx, pod)
	}
	ip, err := s.assign(pod)
	if err != nil {
		return err
	}
	now := metav1.Now()
	upd := pod.DeepCopy()
	upd.Status = runningStatus(pod, now)
	upd.Status.PodIP, upd.Status.PodIPs = ip.String(), []corev1.PodIP{{IP: ip.String()}}
	if n, err := s.nodes.Get(pod.Spec.NodeName); err == nil {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				upd.Status.HostIP, upd.Status.HostIPs = a.Address, []corev1.HostIP{{IP: a.Address}}
			}
		}
	}
	_, err = s.client.CoreV1().Pods(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		s.release(pod)
		return nil
	}
	if err != nil {
		return err
	}
	// Only once the status is written: a retried sync must not repeat them.
	s.containerEvents(pod, pod.Spec.InitContainers, "spec.initContainers")
	s.containerEvents(pod, pod.Spec.Containers, "spec.containers")
	return nil
}

// runningStatus is the status a kubelet reports once every container of
// the pod has started: phase Running, the conditions in the kubelet's order
// with their transition times (PodScheduled is the scheduler's and is kept
// as the binding wrote it), init containers completed (sidecars running),
// containers running and ready since now.
func runningStatus(pod *corev1.Pod, now metav1.Time) corev1.PodStatus {
	scheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
			scheduled = c
		}
	}
	conds := make([]corev1.PodCondition, 0, 5)
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady} {
		conds = append(conds, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	conds = append(conds, scheduled)
	running := func(c corev1.Container) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: containerID(pod, c), Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}
	}
	var inits []corev1.ContainerStatus
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			inits = append(inits, running(c))
			continue
		}
		inits = append(inits, corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: containerID(pod, c), Started: ptr.To(false),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: now, FinishedAt: now,
				ContainerID: containerID(pod, c)}}})
	}
	statuses := make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		statuses = append(statuses, running(c))
	}
	qos := pod.Status.QOSClass // set by the API server from the requests
	if qos == "" {
		qos = corev1.PodQOSBestEffort
	}
	return corev1.PodStatus{Phase: corev1.PodRunning, Conditions: conds, StartTime: &now,
		InitContainerStatuses: inits, ContainerStatuses: statuses, QOSClass: qos}
}

// containerID names a simulated container the way a runtime would, so that
// tools that read it find one.
func containerID(pod *corev1.Pod, c corev1.Container) string {
	return "simulated://" + string(pod.UID) + "/" + c.Name
}

// containerEvents records what a kubelet records as it starts each
// container: Pulled, Created and Started from the kubelet of the pod's node,
// about the container's field of the pod (fieldPath spec.containers{name}).
func (s *Simulator) containerEvents(pod *corev1.Pod, containers []corev1.Container, path string) {
	rec := s.recorders[pod.Spec.NodeName]
	if rec == nil {
		return
	}
	for _, c := range containers {
		ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion, FieldPath: path + "{" + c.Name + "}"}
		rec.Eventf(ref, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
		rec.Eventf(ref, corev1.EventTypeNormal, "Created", "Created container: %s", c.Name)
		rec.Eventf(ref, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	}
}

// assign gives the pod the next free address of its node's podCIDR.
func (s *Simulator) assign(pod *corev1.Pod) (netip.Addr, error) {
	n, err := s.nodes.Get(pod.Spec.NodeName)
	if err != nil {
		return netip.Addr{}, err
	}
	prefix, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node %s has no podCIDR yet", n.Name)
	}
	key := pod.Namespace + "/" + pod.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	used := s.ips[n.Name]
	if used == nil {
		used = map[netip.Addr]string{}
		s.ips[n.Name] = used
	}
	for a, k := range used {
		if k == key {
			return a, nil
		}
	}
	for a := prefix.Addr().Next().Next(); prefix.Contains(a); a = a.Next() {
		if _, taken := used[a]; !taken {
			used[a] = key
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("podCIDR %s of node %s is full", prefix, n.Name)
}

func (s *Simulator) release(pod *corev1.Pod) {
	key := pod.Namespace + "/" + pod.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, k := range s.ips[pod.Spec.NodeName] {
		if k == key {
			delete(s.ips[pod.Spec.NodeName], a)
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Annotations that make a simulated pod's containers exit, so that Jobs can
// run to completion (or fail) on simulated nodes, as kwok's stages allow.
const (
	ExitCodeAnnotation   = "simulate.petrel.io/exit-code"
	RunSecondsAnnotation = "simulate.petrel.io/run-seconds"
)

// finish ends a running pod's containers when its annotations ask for it:
// Succeeded or Failed for restartPolicy Never, a restart for the others.
func (s *Simulator) finish(ctx context.Context, pod *corev1.Pod) error {
	codeText, ok := pod.Annotations[ExitCodeAnnotation]
	if !ok || len(pod.Status.ContainerStatuses) == 0 {
		return nil
	}
	code, err := strconv.Atoi(codeText)
	if err != nil {
		return nil // a bad annotation: the pod just runs
	}
	run, _ := strconv.ParseFloat(pod.Annotations[RunSecondsAnnotation], 64)
	running := pod.Status.ContainerStatuses[0].State.Running
	if running == nil {
		return nil
	}
	if left := time.Duration(run*float64(time.Second)) - time.Since(running.StartedAt.Time); left > 0 {
		s.queue.AddAfter(pod.Namespace+"/"+pod.Name, left)
		return nil
	}
	now := metav1.Now()
	upd := pod.DeepCopy()
	terminated := corev1.ContainerStateTerminated{ExitCode: int32(code), StartedAt: running.StartedAt, FinishedAt: now, Reason: "Completed"}
	if code != 0 {
		terminated.Reason = "Error"
	}
	restart := pod.Spec.RestartPolicy == corev1.RestartPolicyAlways || (pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure && code != 0)
	for i := range upd.Status.ContainerStatuses {
		cs := &upd.Status.ContainerStatuses[i]
		if restart {
			cs.LastTerminationState = corev1.ContainerState{Terminated: terminated.DeepCopy()}
			cs.RestartCount++
			cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
		} else {
			cs.State = corev1.ContainerState{Terminated: terminated.DeepCopy()}
			cs.Ready, cs.Started = false, ptr.To(false)
		}
	}
	if !restart {
		upd.Status.Phase = corev1.PodSucceeded
		if code != 0 {
			upd.Status.Phase = corev1.PodFailed
		}
		for i := range upd.Status.Conditions {
			if t := upd.Status.Conditions[i].Type; t == corev1.PodReady || t == corev1.ContainersReady {
				upd.Status.Conditions[i].Status, upd.Status.Conditions[i].Reason = corev1.ConditionFalse, "PodCompleted"
				upd.Status.Conditions[i].LastTransitionTime = now
			}
		}
	}
	_, err = s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err == nil && restart {
		s.containerEvents(pod, pod.Spec.Containers, "spec.containers")
	}
	return err
}
