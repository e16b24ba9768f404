package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// updateStatus computes the pod's status from what runs and writes it when
// it changed.
// seen holds containers this sync already observed and left alone.
func (k *Kubelet) updateStatus(ctx context.Context, pod *corev1.Pod, ps *podState, sb sandbox, mountErr error, seen map[string]observed) error {
	uid := string(pod.UID)
	st := corev1.PodStatus{
		HostIP: k.hostIP, HostIPs: []corev1.HostIP{{IP: k.hostIP}},
		StartTime: pod.Status.StartTime, QOSClass: pod.Status.QOSClass,
		NominatedNodeName: pod.Status.NominatedNodeName,
	}
	if st.StartTime == nil {
		now := metav1.Now()
		st.StartTime = &now
	}
	if sb.IP != "" {
		st.PodIP, st.PodIPs = sb.IP, []corev1.PodIP{{IP: sb.IP}}
	}

	initDone, initFailed := true, false
	var incomplete, unready []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := k.containerStatus(ctx, pod, ps, sb, c, seen, initContainer)
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		incomplete = append(incomplete, c.Name)
		if t := cs.State.Terminated; t != nil && !restartable(policyOf(pod, true), t.ExitCode) {
			initFailed = true
		}
		initDone = false
	}
	allReady := true
	var running, waiting, stopped, succeeded, unknown int
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs := k.containerStatus(ctx, pod, ps, sb, c, seen, regularContainer)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		allReady = allReady && cs.Ready
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		c := asContainer(&pod.Spec.EphemeralContainers[i])
		st.EphemeralContainerStatuses = append(st.EphemeralContainerStatuses, k.containerStatus(ctx, pod, ps, sb, c, seen, ephemeralContainer))
	}
	// The phase as the kubelet derives it from its containers (ephemeral
	// ones have no say).
	switch {
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initDone:
		st.Phase = corev1.PodPending
	case waiting > 0:
		st.Phase = corev1.PodPending
	case running > 0 && unknown == 0:
		st.Phase = corev1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		switch {
		case pod.Spec.RestartPolicy == corev1.RestartPolicyAlways || pod.Spec.RestartPolicy == "":
			st.Phase = corev1.PodRunning
		case stopped == succeeded:
			st.Phase = corev1.PodSucceeded
		case pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
			st.Phase = corev1.PodFailed
		default:
			st.Phase = corev1.PodRunning
		}
	default:
		st.Phase = corev1.PodPending
	}

	// Kubernetes' reasons and messages: the conformance suite and tools
	// compare them word for word.
	cond := func(t corev1.PodConditionType, ok bool, reason, message string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: message}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		return c
	}
	notReady, notReadyMsg := "ContainersNotReady", "containers with unready status: ["+strings.Join(unready, " ")+"]"
	if !initDone {
		notReady, notReadyMsg = "ContainersNotInitialized", "containers with incomplete status: ["+strings.Join(incomplete, " ")+"]"
	}
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		notReady, notReadyMsg = "PodCompleted", ""
		allReady = false
	}
	conds := []corev1.PodCondition{
		cond("PodReadyToStartContainers", sb.IP != "" && mountErr == nil, "", ""),
		cond(corev1.PodInitialized, initDone, "ContainersNotInitialized", "containers with incomplete status: ["+strings.Join(incomplete, " ")+"]"),
		cond(corev1.ContainersReady, initDone && allReady, notReady, notReadyMsg),
		cond(corev1.PodReady, initDone && allReady, notReady, notReadyMsg),
	}
	// Conditions the kubelet does not own (PodScheduled, the scheduler's
	// or the disruption controller's DisruptionTarget, readiness gates)
	// are kept as they are, as Kubernetes' kubelet keeps them.
	for _, c := range pod.Status.Conditions {
		if !slices.ContainsFunc(conds, func(own corev1.PodCondition) bool { return own.Type == c.Type }) {
			conds = append(conds, c)
		}
	}
	// Keep transition times of conditions that did not change.
	for i := range conds {
		conds[i].LastTransitionTime = metav1.Now()
		for _, old := range pod.Status.Conditions {
			if old.Type == conds[i].Type && old.Status == conds[i].Status {
				conds[i].LastTransitionTime, conds[i].LastProbeTime = old.LastTransitionTime, old.LastProbeTime
			}
		}
	}
	st.Conditions = conds
	apiPrecision(&st)
	if equality.Semantic.DeepEqual(st, pod.Status) {
		return nil
	}
	body, err := statusPatch(uid, &pod.Status, &st)
	if err != nil {
		return err
	}
	_, err = k.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// containerStatus describes one container as Kubernetes reports it.
func (k *Kubelet) containerStatus(ctx context.Context, pod *corev1.Pod, ps *podState, sb sandbox, c *corev1.Container, seen map[string]observed, kind containerKind) corev1.ContainerStatus {
	rec := ps.record(c.Name)
	policy := kind.restartPolicy(pod)
	isInit := kind == initContainer
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, RestartCount: rec.restarts, Started: new(bool)}
	if rec.lastTerm != nil {
		cs.LastTerminationState.Terminated = rec.lastTerm
	}
	// Adopted after a node restart: what the API last said is the best
	// memory of earlier runs.
	for _, old := range slices.Concat(pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses) {
		if old.Name == c.Name && rec.lastTerm == nil && old.LastTerminationState.Terminated != nil {
			cs.LastTerminationState = old.LastTerminationState
		}
	}
	o, ok := seen[c.Name]
	if !ok {
		o = k.observe(ctx, string(pod.UID), c.Name)
	}
	if o.err != nil {
		// Until containerd answers, the API's last word stands.
		for _, old := range slices.Concat(pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses, pod.Status.EphemeralContainerStatuses) {
			if old.Name == c.Name {
				return old
			}
		}
	}
	if o.ctr != nil {
		cs.ContainerID = "containerd://" + o.ctr.ID()
		// The image by digest, as kubelets report it.
		if img, err := o.ctr.Image(ctx); err == nil {
			cs.ImageID = imageRef(img.Name(), img.Target().Digest.String())
		}
	}
	switch {
	case o.running:
		at, _ := time.Parse(time.RFC3339Nano, o.labels[labelStartedAt])
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}
		started, ready := true, true
		switch kind {
		case regularContainer:
			if p := k.ensureProber(ctx, pod, ps, sb, c, o); p != nil {
				started, ready = p.results()
			}
		case initContainer:
			ready = false
		case ephemeralContainer:
			// Ephemeral containers are never ready, as in Kubernetes.
			ready = false
		}
		*cs.Started, cs.Ready = started, started && ready
	case o.exited || o.lost():
		k.stopProber(ps, c.Name)
		t := k.terminated(pod, c, o)
		if restartable(policy, t.ExitCode) {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", rec.backoff, c.Name, pod.Name, pod.Namespace, pod.UID)}
			cs.LastTerminationState.Terminated = t
		} else {
			cs.State.Terminated = t
			cs.Ready = isInit && t.ExitCode == 0
		}
	case rec.failedStart != nil:
		if restartable(policy, rec.failedStart.ExitCode) {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: rec.failedStart.Message}
			cs.LastTerminationState.Terminated = rec.failedStart
		} else {
			cs.State.Terminated = rec.failedStart
		}
	case rec.waiting != nil:
		cs.State.Waiting = rec.waiting
	case len(pod.Spec.InitContainers) > 0 && kind != ephemeralContainer:
		// As Kubernetes: in a pod with init containers, a container not
		// started yet (an init container too) is PodInitializing.
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	return cs
}

// imageRef is name@digest for a name that may carry a tag.
func imageRef(name, digest string) string {
	repo := name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo = name[:i]
	}
	return repo + "@" + digest
}

func (k *Kubelet) stopProber(ps *podState, name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p := ps.probes[name]; p != nil {
		p.stop()
		delete(ps.probes, name)
	}
}

// statusPatch is the strategic merge patch from the status the kubelet read
// to the one it computed, carrying the pod's UID as a precondition (as
// Kubernetes' kubelet writes it). Lists merge by key, so a condition another
// component adds between the read and the write (the scheduler's
// DisruptionTarget on a preempted pod) is not written away.
func statusPatch(uid string, old, updated *corev1.PodStatus) ([]byte, error) {
	before, err := json.Marshal(corev1.Pod{Status: *old})
	if err != nil {
		return nil, fmt.Errorf("encode old status: %w", err)
	}
	after, err := json.Marshal(corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}, Status: *updated})
	if err != nil {
		return nil, fmt.Errorf("encode new status: %w", err)
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(before, after, corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("status patch: %w", err)
	}
	return patch, nil
}
