package kubelet

import (
	"context"
	"os"
	"path/filepath"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	corev1 "k8s.io/api/core/v1"
)

// prefetched is an image got ahead of its container's start.
type prefetched struct {
	img containerd.Image
	err error
}

// prefetchImages gets the images of the containers a new pod starts first
// (its first init container, or else its containers) while its sandbox and
// volumes are made: a pull, or containerd's lookup, need neither. It only
// runs for a pod that has no sandbox yet, and the returned wait must be
// called before the sync starts containers.
func (k *Kubelet) prefetchImages(ctx context.Context, pod *corev1.Pod, ps *podState, dir string) (wait func()) {
	if _, err := os.Stat(filepath.Join(dir, "sandbox.json")); err == nil || k.image == nil {
		return func() {}
	}
	cs := pod.Spec.Containers
	if len(pod.Spec.InitContainers) > 0 {
		cs = pod.Spec.InitContainers[:1]
	}
	var wg sync.WaitGroup
	for i := range cs {
		c := &cs[i]
		rec := ps.record(c.Name)
		if rec.waiting != nil || rec.prefetch != nil {
			continue // backing off a failed pull, or fetched already
		}
		p := &prefetched{}
		rec.prefetch = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.img, p.err = k.image(ctx, pod, c)
		}()
	}
	return wg.Wait
}

// takeImage is the container's image: the one prefetched for this start,
// or got now.
func (k *Kubelet) takeImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, rec *containerRecord) (containerd.Image, error) {
	if p := rec.prefetch; p != nil {
		rec.prefetch = nil
		return p.img, p.err
	}
	return k.image(ctx, pod, c)
}
