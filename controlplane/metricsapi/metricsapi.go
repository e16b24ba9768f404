// Package metricsapi is the figures behind Petrel's built-in
// metrics.k8s.io/v1beta1: it asks each node's server for its Summary
// (/stats/summary, where the node has already taken CPU rates over its
// sampling interval) and turns the answers into NodeMetrics and
// PodMetrics, as metrics-server does from kubelets.
package metricsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// Window is the period a node's CPU rates are taken over: the nodes'
// sampling interval (dataplane/resourcemetrics.DefaultInterval).
const Window = 10 * time.Second

// cacheFor is how long a node's Summary is reused: kubectl top and the
// HPA controller ask often, the figures change every Window.
const cacheFor = 3 * time.Second

// fetchTimeout bounds one node's answer, so that a dead node does not hold
// up the rest.
const fetchTimeout = 5 * time.Second

// Fetcher reads the nodes' Summaries.
type Fetcher struct {
	// Transport reaches node servers with the API server's client
	// certificate.
	Transport http.RoundTripper
	// Address is a node's server (host:port), or an error when it has none.
	Address func(*corev1.Node) (string, error)

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	at      time.Time
	summary *statsv1alpha1.Summary
}

// Summaries asks every node at once; a node that fails is left out (and
// logged), as metrics-server leaves out a kubelet it cannot scrape.
func (f *Fetcher) Summaries(ctx context.Context, nodes []*corev1.Node) map[string]*statsv1alpha1.Summary {
	out := map[string]*statsv1alpha1.Summary{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		if s := f.fromCache(n.Name); s != nil {
			out[n.Name] = s
			continue
		}
		wg.Add(1)
		go func(n *corev1.Node) {
			defer wg.Done()
			s, err := f.fetch(ctx, n)
			if err != nil {
				slog.Debug("metrics API: node summary", "node", n.Name, "err", err)
				return
			}
			f.store(n.Name, s)
			mu.Lock()
			out[n.Name] = s
			mu.Unlock()
		}(n)
	}
	wg.Wait()
	return out
}

func (f *Fetcher) fromCache(node string) *statsv1alpha1.Summary {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.cache[node]; ok && time.Since(c.at) < cacheFor {
		return c.summary
	}
	return nil
}

func (f *Fetcher) store(node string, s *statsv1alpha1.Summary) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cache == nil {
		f.cache = map[string]cached{}
	}
	f.cache[node] = cached{at: time.Now(), summary: s}
}

func (f *Fetcher) fetch(ctx context.Context, n *corev1.Node) (*statsv1alpha1.Summary, error) {
	host, err := f.Address(n)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/stats/summary?only_cpu_and_memory=true", nil)
	if err != nil {
		return nil, fmt.Errorf("summary request: %w", err)
	}
	resp, err := (&http.Client{Transport: f.Transport}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("node %s summary: %w", n.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("node %s summary: %s: %s", n.Name, resp.Status, b)
	}
	s := &statsv1alpha1.Summary{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(s); err != nil {
		return nil, fmt.Errorf("node %s summary: %w", n.Name, err)
	}
	return s, nil
}

// NodeMetrics is the node's usage, or nil when the node has no CPU rate yet.
func NodeMetrics(n *corev1.Node, s *statsv1alpha1.Summary) *metricsv1beta1.NodeMetrics {
	if s == nil {
		return nil
	}
	usage, at, ok := usage(s.Node.CPU, s.Node.Memory)
	if !ok {
		return nil
	}
	return &metricsv1beta1.NodeMetrics{
		TypeMeta:   metav1.TypeMeta{Kind: "NodeMetrics", APIVersion: metricsv1beta1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: metav1.Now()},
		Timestamp:  at, Window: metav1.Duration{Duration: Window}, Usage: usage,
	}
}

// PodMetrics is the pod's usage by container, or nil when the node does not
// report it or any of its containers lacks a CPU rate (metrics-server
// leaves such pods out too).
func PodMetrics(p *corev1.Pod, s *statsv1alpha1.Summary) *metricsv1beta1.PodMetrics {
	if s == nil {
		return nil
	}
	for i := range s.Pods {
		ps := &s.Pods[i]
		if ps.PodRef.Namespace != p.Namespace || ps.PodRef.Name != p.Name || ps.PodRef.UID != string(p.UID) {
			continue
		}
		if len(ps.Containers) == 0 {
			return nil
		}
		out := &metricsv1beta1.PodMetrics{
			TypeMeta:   metav1.TypeMeta{Kind: "PodMetrics", APIVersion: metricsv1beta1.SchemeGroupVersion.String()},
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, CreationTimestamp: metav1.Now()},
			Window:     metav1.Duration{Duration: Window},
		}
		for _, c := range ps.Containers {
			u, at, ok := usage(c.CPU, c.Memory)
			if !ok {
				return nil
			}
			if at.After(out.Timestamp.Time) {
				out.Timestamp = at
			}
			out.Containers = append(out.Containers, metricsv1beta1.ContainerMetrics{Name: c.Name, Usage: u})
		}
		return out
	}
	return nil
}

// usage is the cpu and memory of a stats pair, false without a CPU rate or
// working set.
func usage(cpu *statsv1alpha1.CPUStats, mem *statsv1alpha1.MemoryStats) (corev1.ResourceList, metav1.Time, bool) {
	if cpu == nil || cpu.UsageNanoCores == nil || mem == nil || mem.WorkingSetBytes == nil {
		return nil, metav1.Time{}, false
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewScaledQuantity(int64(*cpu.UsageNanoCores), resource.Nano),
		corev1.ResourceMemory: *resource.NewQuantity(int64(*mem.WorkingSetBytes), resource.BinarySI),
	}, cpu.Time, true
}
