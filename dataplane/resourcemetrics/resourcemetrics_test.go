package resourcemetrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadNode(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "stat"), "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\nbtime 1700000000\n")
	write(t, filepath.Join(dir, "meminfo"), "MemTotal:       1000 kB\nMemFree:         200 kB\nInactive(file):  100 kB\nAnonPages:       300 kB\n")
	u, err := ReadNode(dir)
	if err != nil {
		t.Fatal(err)
	}
	// user+nice+system+irq+softirq+steal = 161 ticks of 10 ms.
	if want := uint64(161 * 10_000_000); u.CPUNanos != want {
		t.Errorf("CPU = %d, want %d", u.CPUNanos, want)
	}
	if u.MemoryUsage != 800*1024 || u.WorkingSet != 700*1024 || u.RSS != 300*1024 {
		t.Errorf("memory = %+v", u)
	}
	if bt := bootTime(dir); !bt.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("boot time %v", bt)
	}
}

func TestReadCgroupV1AndV2(t *testing.T) {
	root := t.TempDir()
	h := Hierarchies{Unified: filepath.Join(root, "unified"), CPUAcct: filepath.Join(root, "cpuacct"), Memory: filepath.Join(root, "memory")}
	// Hybrid: memory and CPU from v1.
	write(t, filepath.Join(h.CPUAcct, "p/pod1/cpuacct.usage"), "5000000000\n")
	write(t, filepath.Join(h.Memory, "p/pod1/memory.usage_in_bytes"), "1000\n")
	write(t, filepath.Join(h.Memory, "p/pod1/memory.stat"), "cache 10\ntotal_inactive_file 300\ntotal_rss 600\ntotal_pgfault 7\n")
	u, err := h.Read("p/pod1")
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUNanos != 5e9 || u.MemoryUsage != 1000 || u.WorkingSet != 700 || u.RSS != 600 || u.PageFaults != 7 {
		t.Errorf("v1 usage = %+v", u)
	}
	// Pure v2: memory.current present.
	write(t, filepath.Join(h.Unified, "p/pod2/cpu.stat"), "usage_usec 2500\nuser_usec 2000\n")
	write(t, filepath.Join(h.Unified, "p/pod2/memory.current"), "4096\n")
	write(t, filepath.Join(h.Unified, "p/pod2/memory.stat"), "anon 1024\ninactive_file 5000\n")
	u, err = h.Read("p/pod2")
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUNanos != 2_500_000 || u.MemoryUsage != 4096 || u.WorkingSet != 0 || u.RSS != 1024 {
		t.Errorf("v2 usage = %+v", u)
	}
	if _, err := h.Read("p/nothing"); err == nil || !strings.Contains(err.Error(), ErrNoCgroup.Error()) {
		t.Errorf("missing cgroup: err = %v", err)
	}
}

func TestCollectorRates(t *testing.T) {
	root, proc := t.TempDir(), t.TempDir()
	write(t, filepath.Join(proc, "stat"), "cpu  100 0 0 1000 0 0 0 0 0 0\n")
	write(t, filepath.Join(proc, "meminfo"), "MemTotal: 1000 kB\nMemFree: 500 kB\n")
	h := Hierarchies{CPUAcct: filepath.Join(root, "cpuacct"), Memory: filepath.Join(root, "memory")}
	for _, d := range []string{"pr/podu1", "pr/podu1/app"} {
		write(t, filepath.Join(h.CPUAcct, d, "cpuacct.usage"), "1000000000\n")
		write(t, filepath.Join(h.Memory, d, "memory.usage_in_bytes"), "100\n")
		write(t, filepath.Join(h.Memory, d, "memory.stat"), "total_inactive_file 0\n")
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
		Spec: corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "app"}, {Name: "notstarted"}}}}
	c, err := NewCollector(Config{NodeName: "n", CgroupRoot: "pr", ProcDir: proc, Hierarchies: h,
		Pods: func() []*corev1.Pod { return []*corev1.Pod{pod} }})
	if err != nil {
		t.Fatal(err)
	}
	first := c.sample()
	if len(first.Pods) != 1 || len(first.Pods[0].Containers) != 1 || first.Pods[0].NanoCores != nil {
		t.Fatalf("first sample: %+v", first)
	}
	time.Sleep(100 * time.Millisecond)
	// One more CPU second in the container.
	write(t, filepath.Join(h.CPUAcct, "pr/podu1/app/cpuacct.usage"), "2000000000\n")
	s := c.sample()
	nc := s.Pods[0].Containers[0].NanoCores
	if nc == nil || *nc < 1e9 {
		t.Fatalf("container rate after 1 s of CPU in ~0.1 s: %v", nc)
	}
	if r := s.Pods[0].NanoCores; r == nil || *r != 0 {
		t.Errorf("pod rate with an unchanged counter: %v", r)
	}
	sum := Summary(c.Latest())
	if sum.Node.NodeName != "n" || len(sum.Pods) != 1 || sum.Pods[0].Containers[0].CPU.UsageNanoCores == nil ||
		*sum.Pods[0].Containers[0].CPU.UsageCoreNanoSeconds != 2e9 {
		t.Errorf("summary: %+v", sum)
	}
}

// TestReadOwnCgroup reads this process's cgroup on the real machine.
func TestReadOwnCgroup(t *testing.T) {
	h, err := FindHierarchies()
	if err != nil {
		t.Skipf("no cgroup hierarchies here: %v", err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var path string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (strings.Contains(parts[1], "cpuacct") || (parts[0] == "0" && h.CPUAcct == "")) {
			path = parts[2]
		}
	}
	u, err := h.Read(path)
	if err != nil {
		t.Fatalf("reading own cgroup %q: %v", path, err)
	}
	if u.CPUNanos == 0 {
		t.Errorf("own cgroup %q used no CPU: %+v", path, u)
	}
}
