package imagepull

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"golang.org/x/sys/unix"
)

// GCPolicy is the kubelet's image garbage collection: when the disk that
// holds the images is more than High percent used, unused images are
// removed, least recently used first, until it is Low percent used.
type GCPolicy struct {
	// High and Low are percentages of the disk; High 100 turns GC off.
	High, Low int
	// MinAge keeps an image this long after it was pulled or last used.
	MinAge time.Duration
	// Period is how often usage is looked at.
	Period time.Duration
	// Dir is a directory on the disk that holds containerd's content and
	// snapshots (its root).
	Dir string
}

// DefaultGCPolicy is the kubelet's default.
func DefaultGCPolicy() GCPolicy {
	return GCPolicy{High: 85, Low: 80, MinAge: 2 * time.Minute, Period: 5 * time.Minute}
}

// Validate checks the thresholds as the kubelet does.
func (g GCPolicy) Validate() error {
	if g.High < 0 || g.High > 100 || g.Low < 0 || g.Low > 100 {
		return fmt.Errorf("image GC thresholds must be percentages (high %d, low %d)", g.High, g.Low)
	}
	if g.Low > g.High {
		return fmt.Errorf("image GC low threshold %d is above the high threshold %d", g.Low, g.High)
	}
	return nil
}

// RunGC collects images every Period until ctx ends.
func (p *Puller) RunGC(ctx context.Context, g GCPolicy) {
	if g.High >= 100 || g.Dir == "" || g.Period <= 0 {
		return
	}
	t := time.NewTicker(g.Period)
	defer t.Stop()
	for {
		if removed, err := p.CollectImages(ctx, g); err != nil {
			slog.Warn("imagepull: image garbage collection failed", "err", err)
		} else if len(removed) > 0 {
			slog.Info("imagepull: removed unused images", "images", removed)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// diskUsage is the used and total bytes of the filesystem of dir.
func diskUsage(dir string) (used, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	total = st.Blocks * uint64(st.Bsize)
	return total - st.Bavail*uint64(st.Bsize), total, nil
}

// CollectImages removes unused images when the disk is above the high
// threshold, until the low one is reached or no unused image is left; it
// returns the names removed. An image is in use while any container (running
// or not) was made from it.
func (p *Puller) CollectImages(ctx context.Context, g GCPolicy) ([]string, error) {
	used, total, err := diskUsage(g.Dir)
	if err != nil || total == 0 {
		return nil, err
	}
	if used*100 < uint64(g.High)*total {
		return nil, nil
	}
	toFree := int64(used) - int64(uint64(g.Low)*total/100)
	inUse := map[string]bool{}
	ctrs, err := p.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			return nil, fmt.Errorf("read container %s: %w", c.ID(), err)
		}
		inUse[info.Image] = true
	}
	imgs, err := p.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	// Images sharing a target are one image under several names: in use
	// when any name is.
	usedTargets := map[string]bool{}
	for _, img := range imgs {
		if inUse[img.Name] {
			usedTargets[img.Target.Digest.String()] = true
		}
	}
	type candidate struct {
		img  images.Image
		last time.Time
	}
	var cands []candidate
	now := time.Now()
	p.mu.Lock()
	for _, img := range imgs {
		if usedTargets[img.Target.Digest.String()] {
			continue
		}
		last := img.UpdatedAt
		if t := p.lastUsed[img.Name]; t.After(last) {
			last = t
		}
		if now.Sub(last) < g.MinAge {
			continue
		}
		cands = append(cands, candidate{img, last})
	}
	p.mu.Unlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].last.Before(cands[j].last) })
	var removed []string
	for _, c := range cands {
		if toFree <= 0 {
			break
		}
		size, _ := containerd.NewImage(p.client, c.img).Size(ctx)
		if err := p.client.ImageService().Delete(ctx, c.img.Name, images.SynchronousDelete()); err != nil {
			return removed, fmt.Errorf("remove image %s: %w", c.img.Name, err)
		}
		p.mu.Lock()
		delete(p.lastUsed, c.img.Name)
		p.mu.Unlock()
		removed = append(removed, c.img.Name)
		toFree -= size
	}
	return removed, nil
}
