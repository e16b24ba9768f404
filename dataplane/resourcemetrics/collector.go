package resourcemetrics

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DefaultInterval is how often the collector samples for CPU rates, as
// cAdvisor's housekeeping in the kubelet.
const DefaultInterval = 10 * time.Second

// Config says what the collector reads.
type Config struct {
	NodeName string
	// CgroupRoot is the cgroup pods go in, as pod<uid>/<container>.
	CgroupRoot string
	// Pods lists the pods bound to this node.
	Pods func() []*corev1.Pod
	// Interval is the sampling period the CPU rates are taken over
	// (0: DefaultInterval).
	Interval time.Duration
	// ProcDir is /proc unless set (tests).
	ProcDir string
	// Hierarchies are the cgroup mounts (zero: found from the mounts).
	Hierarchies Hierarchies
}

// Point is one reading: usage at a time, with the CPU rate since the
// previous sample when there was one.
type Point struct {
	Time  time.Time
	Usage Usage
	// NanoCores is CPU used per second over the last interval, in
	// billionths of a core; nil until two samples exist.
	NanoCores *uint64
}

// Container is one container's reading.
type Container struct {
	Name  string
	Start time.Time
	Point
}

// Pod is one pod's reading: its cgroup as a whole and each container's.
type Pod struct {
	Namespace, Name, UID string
	Start                time.Time
	Point
	Containers []Container
}

// Snapshot is a reading of the node and every pod on it that has a cgroup.
type Snapshot struct {
	NodeName  string
	NodeStart time.Time
	Node      Point
	Pods      []Pod
}

// Collector samples the node and its pods.
type Collector struct {
	cfg Config

	mu   sync.Mutex
	last *Snapshot
	// prev are the points of the last sample by cgroup ("" the node), for
	// the rates of the next.
	prev map[string]Point
}

// NewCollector makes a collector; Run starts its sampling.
func NewCollector(cfg Config) (*Collector, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.ProcDir == "" {
		cfg.ProcDir = "/proc"
	}
	if cfg.Hierarchies == (Hierarchies{}) {
		h, err := FindHierarchies()
		if err != nil {
			return nil, err
		}
		cfg.Hierarchies = h
	}
	return &Collector{cfg: cfg, prev: map[string]Point{}}, nil
}

// Run samples every interval until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Latest is the last interval's sample, with CPU rates; the first call
// before any sample reads one.
func (c *Collector) Latest() *Snapshot {
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	if last == nil {
		return c.sample()
	}
	return last
}

// Read reads everything now, without rates: for the cumulative counters of
// /metrics/resource, whose scrapers take rates themselves.
func (c *Collector) Read() *Snapshot {
	return c.read(nil)
}

func (c *Collector) sample() *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[string]Point{}
	s := c.read(func(key string, p *Point) {
		if old, ok := c.prev[key]; ok {
			p.NanoCores = rate(old, *p)
		}
		next[key] = *p
	})
	c.prev = next
	c.last = s
	return s
}

// rate is the CPU used per second between two points, in nanocores; nil
// when the counter went back (a cgroup made anew) or no time passed.
func rate(old, cur Point) *uint64 {
	dt := cur.Time.Sub(old.Time)
	if dt <= 0 || cur.Usage.CPUNanos < old.Usage.CPUNanos {
		return nil
	}
	v := uint64(float64(cur.Usage.CPUNanos-old.Usage.CPUNanos) / dt.Seconds())
	return &v
}

// read reads the node and pods; seen, when set, is given each point with its
// cgroup key before it is stored.
func (c *Collector) read(seen func(key string, p *Point)) *Snapshot {
	s := &Snapshot{NodeName: c.cfg.NodeName, NodeStart: bootTime(c.cfg.ProcDir)}
	now := time.Now()
	if u, err := ReadNode(c.cfg.ProcDir); err != nil {
		slog.Warn("resource metrics: reading the node", "err", err)
	} else {
		s.Node = Point{Time: now, Usage: u}
		if seen != nil {
			seen("", &s.Node)
		}
	}
	var pods []*corev1.Pod
	if c.cfg.Pods != nil {
		pods = c.cfg.Pods()
	}
	for _, pod := range pods {
		if pod.Spec.NodeName != c.cfg.NodeName || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		path := filepath.Join(c.cfg.CgroupRoot, "pod"+string(pod.UID))
		u, err := c.cfg.Hierarchies.Read(path)
		if err != nil {
			if !errors.Is(err, ErrNoCgroup) {
				slog.Warn("resource metrics: reading a pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			}
			continue
		}
		p := Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), Point: Point{Time: time.Now(), Usage: u}}
		if pod.Status.StartTime != nil {
			p.Start = pod.Status.StartTime.Time
		} else {
			p.Start = pod.CreationTimestamp.Time
		}
		if seen != nil {
			seen(path, &p.Point)
		}
		started := map[string]time.Time{}
		for _, st := range pod.Status.ContainerStatuses {
			if st.State.Running != nil {
				started[st.Name] = st.State.Running.StartedAt.Time
			}
		}
		for _, ctr := range pod.Spec.Containers {
			cpath := filepath.Join(path, ctr.Name)
			cu, err := c.cfg.Hierarchies.Read(cpath)
			if err != nil {
				continue
			}
			cc := Container{Name: ctr.Name, Start: started[ctr.Name], Point: Point{Time: time.Now(), Usage: cu}}
			if cc.Start.IsZero() {
				cc.Start = p.Start
			}
			if seen != nil {
				seen(cpath, &cc.Point)
			}
			p.Containers = append(p.Containers, cc)
		}
		s.Pods = append(s.Pods, p)
	}
	return s
}
