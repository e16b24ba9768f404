package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	containerd "github.com/containerd/containerd/v2/client"
	corev1 "k8s.io/api/core/v1"
)

// Import loads an OCI (or Docker) image archive into containerd and unpacks
// it, so that a pod can start from it with imagePullPolicy Never or
// IfNotPresent. It returns the names of the images imported.
func Import(ctx context.Context, c *containerd.Client, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	imgs, err := c.Import(ctx, f, containerd.WithAllPlatforms(false))
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	names := make([]string, 0, len(imgs))
	for _, md := range imgs {
		img := containerd.NewImage(c, md)
		if err := img.Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("unpack %s from %s: %w", md.Name, path, err)
		}
		names = append(names, md.Name)
	}
	return names, nil
}

// ImportDir imports every *.tar in dir (the node's drop directory); a
// missing directory is not an error.
func ImportDir(ctx context.Context, c *containerd.Client, dir string) ([]string, error) {
	archives, _ := filepath.Glob(filepath.Join(dir, "*.tar"))
	var names []string
	for _, a := range archives {
		n, err := Import(ctx, c, a)
		if err != nil {
			return names, err
		}
		names = append(names, n...)
	}
	return names, nil
}

// NodeImages lists the images for Node.status.images, largest first as the
// kubelet reports them.
func NodeImages(ctx context.Context, c *containerd.Client) ([]corev1.ContainerImage, error) {
	imgs, err := c.ListImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	byTarget := map[string]*corev1.ContainerImage{}
	var out []*corev1.ContainerImage
	for _, img := range imgs {
		key := img.Target().Digest.String()
		ci := byTarget[key]
		if ci == nil {
			size, _ := img.Size(ctx)
			ci = &corev1.ContainerImage{SizeBytes: size}
			byTarget[key] = ci
			out = append(out, ci)
		}
		ci.Names = append(ci.Names, img.Name())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SizeBytes > out[j].SizeBytes })
	res := make([]corev1.ContainerImage, len(out))
	for i, ci := range out {
		res[i] = *ci
	}
	return res, nil
}
