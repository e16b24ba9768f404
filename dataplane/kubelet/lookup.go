package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/petrel-project/petrel/dataplane/runtime"
)

// What the node's stream server (logs, exec, port-forward) asks of the
// kubelet. Errors are Kubernetes API errors, so that kubectl shows them as
// it would a kubelet's.

func (k *Kubelet) pod(namespace, name string) (*corev1.Pod, error) {
	obj, ok, _ := k.pods.GetByKey(namespace + "/" + name)
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name)
	}
	return obj.(*corev1.Pod), nil
}

// specOf is the named container of the pod, of any kind (init, regular or
// ephemeral), or nil.
func specOf(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		if pod.Spec.EphemeralContainers[i].Name == name {
			return asContainer(&pod.Spec.EphemeralContainers[i])
		}
	}
	return nil
}

func hasContainer(pod *corev1.Pod, name string) bool { return specOf(pod, name) != nil }

// RunningContainer is a running container of a pod, for exec.
func (k *Kubelet) RunningContainer(ctx context.Context, namespace, name, container string) (containerd.Container, types.UID, error) {
	pod, err := k.pod(namespace, name)
	if err != nil {
		return nil, "", err
	}
	if !hasContainer(pod, container) {
		return nil, "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, name))
	}
	o := k.observe(ctx, string(pod.UID), container)
	if o.err != nil {
		return nil, "", apierrors.NewServiceUnavailable(fmt.Sprintf("container %s in pod %s: %v; try again", container, name, o.err))
	}
	if !o.running {
		return nil, "", apierrors.NewBadRequest(fmt.Sprintf("container %s in pod %s is not running", container, name))
	}
	return o.ctr, pod.UID, nil
}

// Attachable is a running container and how its IO was made, for attach.
func (k *Kubelet) Attachable(ctx context.Context, namespace, name, container string) (runtime.Attachable, error) {
	ctr, uid, err := k.RunningContainer(ctx, namespace, name, container)
	if err != nil {
		return runtime.Attachable{}, err
	}
	pod, err := k.pod(namespace, name)
	if err != nil {
		return runtime.Attachable{}, err
	}
	labels, err := ctr.Labels(ctx)
	if err != nil {
		return runtime.Attachable{}, fmt.Errorf("container %s: %w", container, err)
	}
	restarts, _ := strconv.Atoi(labels[labelRestarts])
	a := runtime.Attachable{Container: ctr, PodUID: string(uid), IODir: ioDir(k.podDir(string(uid)), container, int32(restarts))}
	if c := specOf(pod, container); c != nil {
		a.Stdin, a.StdinOnce, a.TTY = c.Stdin, c.StdinOnce, c.TTY
	}
	return a, nil
}

// LogFile is the log of the container's current run (or, with previous, of
// the run before), and a function that says whether that run has ended.
func (k *Kubelet) LogFile(ctx context.Context, namespace, name, container string, previous bool) (string, func() bool, error) {
	pod, err := k.pod(namespace, name)
	if err != nil {
		return "", nil, err
	}
	if !hasContainer(pod, container) {
		return "", nil, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", container, name))
	}
	dir := filepath.Join(k.podDir(string(pod.UID)), "logs", container)
	entries, _ := os.ReadDir(dir)
	var runs []int
	for _, e := range entries {
		if n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".log")); err == nil {
			runs = append(runs, n)
		}
	}
	sort.Ints(runs)
	o := k.observe(ctx, string(pod.UID), container)
	current := -1
	if o.ctr != nil {
		current, _ = strconv.Atoi(o.labels[labelRestarts])
	} else if len(runs) > 0 {
		current = runs[len(runs)-1]
	}
	want := current
	if previous {
		want = -1
		for _, n := range runs {
			if n < current {
				want = n
			}
		}
		if want < 0 {
			return "", nil, apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", container, name))
		}
		return filepath.Join(dir, fmt.Sprintf("%d.log", want)), func() bool { return true }, nil
	}
	path := filepath.Join(dir, fmt.Sprintf("%d.log", want))
	if _, err := os.Stat(path); want < 0 || err != nil {
		reason := "ContainerCreating"
		for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.ContainerStatuses...), pod.Status.InitContainerStatuses...) {
			if cs.Name == container && cs.State.Waiting != nil {
				reason = cs.State.Waiting.Reason
			}
		}
		return "", nil, apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: %s", container, name, reason))
	}
	uid := string(pod.UID)
	return path, func() bool {
		o := k.observe(context.WithoutCancel(ctx), uid, container)
		return o.err == nil && !o.running
	}, nil
}

// PodIP is the pod's address, for port-forward.
func (k *Kubelet) PodIP(namespace, name string) (string, types.UID, error) {
	pod, err := k.pod(namespace, name)
	if err != nil {
		return "", "", err
	}
	b, err := os.ReadFile(filepath.Join(k.podDir(string(pod.UID)), "sandbox.json"))
	var sb sandbox
	if err != nil || json.Unmarshal(b, &sb) != nil || sb.IP == "" {
		return "", "", apierrors.NewBadRequest(fmt.Sprintf("pod %s has no network yet", name))
	}
	return sb.IP, pod.UID, nil
}
