package resourcemetrics

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Handler serves GET /stats/summary and GET /metrics/resource from c.
func Handler(c *Collector) http.Handler {
	mux := http.NewServeMux()
	reg := prometheus.NewRegistry()
	reg.MustRegister(resourceCollector{c})
	mux.Handle("GET /metrics/resource", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /stats/summary", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Summary(c.Latest()))
	})
	return mux
}

// Summary is a snapshot in the kubelet's Summary API form.
func Summary(s *Snapshot) *statsv1alpha1.Summary {
	out := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{
		NodeName:  s.NodeName,
		StartTime: metav1.NewTime(s.NodeStart),
		CPU:       cpuStats(s.Node),
		Memory:    memoryStats(s.Node),
	}}
	out.Pods = make([]statsv1alpha1.PodStats, 0, len(s.Pods))
	for _, p := range s.Pods {
		ps := statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			StartTime: metav1.NewTime(p.Start),
			CPU:       cpuStats(p.Point),
			Memory:    memoryStats(p.Point),
		}
		for _, c := range p.Containers {
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
				Name: c.Name, StartTime: metav1.NewTime(c.Start), CPU: cpuStats(c.Point), Memory: memoryStats(c.Point),
			})
		}
		out.Pods = append(out.Pods, ps)
	}
	return out
}

func cpuStats(p Point) *statsv1alpha1.CPUStats {
	if p.Time.IsZero() {
		return nil
	}
	total := p.Usage.CPUNanos
	return &statsv1alpha1.CPUStats{Time: metav1.NewTime(p.Time), UsageNanoCores: p.NanoCores, UsageCoreNanoSeconds: &total}
}

func memoryStats(p Point) *statsv1alpha1.MemoryStats {
	if p.Time.IsZero() {
		return nil
	}
	u := p.Usage
	return &statsv1alpha1.MemoryStats{Time: metav1.NewTime(p.Time), UsageBytes: &u.MemoryUsage, WorkingSetBytes: &u.WorkingSet,
		RSSBytes: &u.RSS, PageFaults: &u.PageFaults, MajorPageFaults: &u.MajorPageFaults}
}

// The kubelet's resource metrics, by the names metrics-server reads.
var (
	descNodeCPU        = prometheus.NewDesc("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", nil, nil)
	descNodeMemory     = prometheus.NewDesc("node_memory_working_set_bytes", "Current working set of the node in bytes", nil, nil)
	descPodCPU         = prometheus.NewDesc("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", []string{"namespace", "pod"}, nil)
	descPodMemory      = prometheus.NewDesc("pod_memory_working_set_bytes", "Current working set of the pod in bytes", []string{"namespace", "pod"}, nil)
	descContainerCPU   = prometheus.NewDesc("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", []string{"container", "pod", "namespace"}, nil)
	descContainerMem   = prometheus.NewDesc("container_memory_working_set_bytes", "Current working set of the container in bytes", []string{"container", "pod", "namespace"}, nil)
	descContainerStart = prometheus.NewDesc("container_start_time_seconds", "Start time of the container since unix epoch in seconds", []string{"container", "pod", "namespace"}, nil)
	descScrapeError    = prometheus.NewDesc("resource_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)

// resourceCollector serves /metrics/resource: each sample carries the time
// it was read, which metrics-server needs to take rates.
type resourceCollector struct{ c *Collector }

func (resourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodeCPU, descNodeMemory, descPodCPU, descPodMemory, descContainerCPU, descContainerMem, descContainerStart, descScrapeError} {
		ch <- d
	}
}

func (rc resourceCollector) Collect(ch chan<- prometheus.Metric) {
	s := rc.c.Read()
	emit := func(d *prometheus.Desc, t prometheus.ValueType, at time.Time, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(d, t, v, labels...)
		if err != nil {
			return
		}
		ch <- prometheus.NewMetricWithTimestamp(at, m)
	}
	failed := 0.0
	if s.Node.Time.IsZero() {
		failed = 1
	} else {
		emit(descNodeCPU, prometheus.CounterValue, s.Node.Time, seconds(s.Node.Usage.CPUNanos))
		emit(descNodeMemory, prometheus.GaugeValue, s.Node.Time, float64(s.Node.Usage.WorkingSet))
	}
	for _, p := range s.Pods {
		emit(descPodCPU, prometheus.CounterValue, p.Time, seconds(p.Usage.CPUNanos), p.Namespace, p.Name)
		emit(descPodMemory, prometheus.GaugeValue, p.Time, float64(p.Usage.WorkingSet), p.Namespace, p.Name)
		for _, c := range p.Containers {
			emit(descContainerCPU, prometheus.CounterValue, c.Time, seconds(c.Usage.CPUNanos), c.Name, p.Name, p.Namespace)
			emit(descContainerMem, prometheus.GaugeValue, c.Time, float64(c.Usage.WorkingSet), c.Name, p.Name, p.Namespace)
			emit(descContainerStart, prometheus.GaugeValue, c.Time, float64(c.Start.UnixNano())/1e9, c.Name, p.Name, p.Namespace)
		}
	}
	ch <- prometheus.MustNewConstMetric(descScrapeError, prometheus.GaugeValue, failed)
}

func seconds(ns uint64) float64 { return float64(ns) / 1e9 }
