package resourcemetrics

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/stat's CPU times: USER_HZ, which Linux fixes
// at 100 for user space whatever the kernel's tick rate.
const userHZ = 100

// ReadNode gives the whole machine's usage from procDir (/proc): CPU time
// busy on every CPU (iowait and idle excluded) and memory in use, the
// working set being that less the inactive file cache, as the kubelet
// counts the root cgroup.
func ReadNode(procDir string) (Usage, error) {
	var u Usage
	f, err := os.Open(filepath.Join(procDir, "stat"))
	if err != nil {
		return u, fmt.Errorf("reading node CPU: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return u, fmt.Errorf("reading node CPU: empty %s/stat", procDir)
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 8 || fields[0] != "cpu" {
		return u, fmt.Errorf("reading node CPU: unexpected first line %q", sc.Text())
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal: guest time is in user.
	for i, v := range fields[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return u, fmt.Errorf("reading node CPU: %w", err)
		}
		busy += n
	}
	u.CPUNanos = busy * (1e9 / userHZ)
	mem, err := meminfo(filepath.Join(procDir, "meminfo"))
	if err != nil {
		return u, err
	}
	u.MemoryUsage = sub(mem["MemTotal"], mem["MemFree"])
	u.WorkingSet = sub(u.MemoryUsage, mem["Inactive(file)"])
	u.RSS = mem["AnonPages"]
	return u, nil
}

// MemoryCapacity is the machine's memory (MemTotal), in bytes.
func MemoryCapacity(procDir string) (uint64, error) {
	mem, err := meminfo(filepath.Join(procDir, "meminfo"))
	return mem["MemTotal"], err
}

// meminfo reads /proc/meminfo into bytes by key.
func meminfo(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading node memory: %w", err)
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fs) > 1 && fs[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out, sc.Err()
}

// bootTime is when the machine started (btime in /proc/stat); zero if
// unreadable.
func bootTime(procDir string) time.Time {
	f, err := os.Open(filepath.Join(procDir, "stat"))
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(n, 0)
			}
		}
	}
	return time.Time{}
}
