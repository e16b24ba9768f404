// Package resourcemetrics reads the CPU and memory the node, its pods and
// their containers use (cgroups for pods and containers, /proc for the
// node) and serves them on the node server as the kubelet does:
// /stats/summary (the Summary API) and /metrics/resource (Prometheus text
// with sample timestamps), so metrics-server and Petrel's own API server
// read a Petrel node as they read a kubelet.
package resourcemetrics

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Usage is what one cgroup (or the node) has used: cumulative CPU time and
// the memory it holds now.
type Usage struct {
	// CPUNanos is the CPU time used since the cgroup was made, in ns.
	CPUNanos uint64
	// MemoryUsage is all memory charged, page cache included.
	MemoryUsage uint64
	// WorkingSet is MemoryUsage less the inactive file cache: what the
	// kubelet reports and eviction and `kubectl top` go by.
	WorkingSet uint64
	// RSS is anonymous memory.
	RSS uint64
	// PageFaults and MajorPageFaults are cumulative counts.
	PageFaults, MajorPageFaults uint64
}

// Hierarchies are where the cgroup file systems the readers need are
// mounted: the v2 one and, on a hybrid or v1 machine, the v1 cpuacct and
// memory controllers (which is where a hybrid machine accounts memory).
type Hierarchies struct {
	Unified, CPUAcct, Memory string
}

// FindHierarchies reads the mounts of this process's mount namespace.
func FindHierarchies() (Hierarchies, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return Hierarchies{}, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	var h Hierarchies
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		switch fields[2] {
		case "cgroup2":
			if h.Unified == "" {
				h.Unified = fields[1]
			}
		case "cgroup":
			for _, opt := range strings.Split(fields[3], ",") {
				switch opt {
				case "cpuacct":
					if h.CPUAcct == "" {
						h.CPUAcct = fields[1]
					}
				case "memory":
					if h.Memory == "" {
						h.Memory = fields[1]
					}
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Hierarchies{}, fmt.Errorf("reading mounts: %w", err)
	}
	if h.Unified == "" && (h.CPUAcct == "" || h.Memory == "") {
		return h, errors.New("no cgroup v2 mount and no v1 cpuacct and memory controllers")
	}
	return h, nil
}

// ErrNoCgroup is returned for a cgroup that does not exist (a container not
// started yet, or gone).
var ErrNoCgroup = errors.New("no such cgroup")

// Read gives the usage of the cgroup at path (relative to the hierarchies'
// roots). A machine whose v2 hierarchy has the memory controller is read
// there; a hybrid one takes memory from v1 and CPU from v1's cpuacct
// (falling back to v2's cpu.stat, which the kernel keeps without the cpu
// controller).
func (h Hierarchies) Read(path string) (Usage, error) {
	rel := filepath.Clean("/" + path)
	if h.Unified != "" {
		dir := filepath.Join(h.Unified, rel)
		if _, err := os.Stat(filepath.Join(dir, "memory.current")); err == nil {
			return readV2(dir)
		}
	}
	var u Usage
	var cpuErr error
	if h.CPUAcct != "" {
		u.CPUNanos, cpuErr = readUint(filepath.Join(h.CPUAcct, rel, "cpuacct.usage"))
	} else {
		cpuErr = ErrNoCgroup
	}
	if cpuErr != nil && h.Unified != "" {
		var st map[string]uint64
		if st, cpuErr = readKV(filepath.Join(h.Unified, rel, "cpu.stat")); cpuErr == nil {
			u.CPUNanos = st["usage_usec"] * 1000
		}
	}
	if cpuErr != nil {
		return Usage{}, notExist(cpuErr, path)
	}
	if h.Memory == "" {
		return u, nil
	}
	dir := filepath.Join(h.Memory, rel)
	usage, err := readUint(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return Usage{}, notExist(err, path)
	}
	st, err := readKV(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return Usage{}, notExist(err, path)
	}
	u.MemoryUsage = usage
	u.WorkingSet = sub(usage, st["total_inactive_file"])
	u.RSS = st["total_rss"]
	u.PageFaults, u.MajorPageFaults = st["total_pgfault"], st["total_pgmajfault"]
	return u, nil
}

func readV2(dir string) (Usage, error) {
	var u Usage
	cpu, err := readKV(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return u, notExist(err, dir)
	}
	u.CPUNanos = cpu["usage_usec"] * 1000
	if u.MemoryUsage, err = readUint(filepath.Join(dir, "memory.current")); err != nil {
		return u, notExist(err, dir)
	}
	st, err := readKV(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return u, notExist(err, dir)
	}
	u.WorkingSet = sub(u.MemoryUsage, st["inactive_file"])
	u.RSS = st["anon"]
	u.PageFaults, u.MajorPageFaults = st["pgfault"], st["pgmajfault"]
	return u, nil
}

func notExist(err error, path string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNoCgroup, path)
	}
	return fmt.Errorf("cgroup %s: %w", path, err)
}

// sub is a-b, or 0 when b is larger (the kernel's counters are read one
// file at a time, so they need not agree).
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	return v, nil
}

// readKV reads a "key value" per line file (cpu.stat, memory.stat).
func readKV(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}
