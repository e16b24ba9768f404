package bpfobj

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// CgroupV2Mount finds the cgroup v2 hierarchy: /sys/fs/cgroup on a unified
// system, /sys/fs/cgroup/unified on a hybrid one.
func CgroupV2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// mountinfo: ID parent major:minor root mountpoint options ... - fstype source super
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	return "", fmt.Errorf("no cgroup2 filesystem is mounted: mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`")
}
