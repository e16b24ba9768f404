package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// unifiedMount is where a hybrid cgroup host mounts its v2 hierarchy.
const unifiedMount = "/sys/fs/cgroup/unified"

// PrepareCrun makes a hybrid cgroup host (v1 controllers, plus the v2
// hierarchy at /sys/fs/cgroup/unified) one that crun places containers
// on. crun refuses a hybrid host whose v2 hierarchy still offers
// controllers ("cgroups in hybrid mode not supported, drop all controllers
// from cgroupv2"); a controller that no v1 hierarchy has (hugetlb, on some
// machines) stays in v2. Each such controller that nothing enables in v2
// is mounted as a v1 hierarchy of its own under /sys/fs/cgroup, as a
// systemd hybrid boot would have it, which runc is equally happy with.
// It returns nil when crun can run here (also on a pure v1 or v2 host).
func PrepareCrun() error {
	var st unix.Statfs_t
	if err := unix.Statfs(unifiedMount, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil // not hybrid
	}
	b, err := os.ReadFile(filepath.Join(unifiedMount, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read the v2 controllers: %w", err)
	}
	ctrls := strings.Fields(string(b))
	if len(ctrls) == 0 {
		return nil
	}
	if sub, _ := os.ReadFile(filepath.Join(unifiedMount, "cgroup.subtree_control")); strings.TrimSpace(string(sub)) != "" {
		return fmt.Errorf("the hybrid host enables cgroup v2 controllers (%s), which crun refuses", strings.TrimSpace(string(sub)))
	}
	var errs []error
	for _, c := range ctrls {
		dir := filepath.Join("/sys/fs/cgroup", c)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount("cgroup", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, c); err != nil {
			errs = append(errs, fmt.Errorf("mount the %s controller as cgroup v1 at %s: %w", c, dir, err))
			continue
		}
		slog.Info("runtime: mounted a cgroup controller left in v2 as v1, so that crun runs containers on this hybrid host", "controller", c, "at", dir)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("crun cannot place containers in cgroups on this hybrid host: %w", err)
	}
	return nil
}
