package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DropPageCache evicts a binary's pages from the page cache (all but those
// a running process maps), so the process under test maps its code as it
// would after a reboot. A binary the Go linker has just written sits in the
// page cache in large folios, which the kernel maps 2 MB at a time: the
// same code in use then shows about 30 MB more RSS, a figure of how the
// file was last written rather than of the server. The bench reports the
// file-backed and anonymous parts apart as well.
func DropPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("dropping %s from the page cache: %w", path, err)
	}
	return nil
}

// RSSMB reads a process's resident set size.
func RSSMB(pid int) (float64, error) { return ProcStatusMB(pid, "VmRSS") }

// ProcStatusMB reads one of /proc/<pid>/status's kB fields, in MB.
func ProcStatusMB(pid int, field string) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb float64
			_, err := fmt.Sscanf(strings.TrimSpace(rest), "%f kB", &kb)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s for pid %d", field, pid)
}

// SaveCPUProfile fetches a CPU profile of seconds from the pprof handlers
// at base and writes it to path.
func SaveCPUProfile(ctx context.Context, base string, seconds int, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, seconds), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CPU profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// KeepLog moves a log out of a directory about to be removed, for a
// failed run, and returns where it went.
func KeepLog(path string) string {
	kept := filepath.Join(os.TempDir(), fmt.Sprintf("petrel-bench-%d-%s", os.Getpid(), filepath.Base(path)))
	if err := os.Rename(path, kept); err != nil {
		return fmt.Sprintf("(lost: %v)", err)
	}
	return kept
}

// ProcCPUTicks returns the CPU time of pid and of its children it has
// reaped (utime, stime, cutime, cstime), in clock ticks of 10 ms.
func ProcCPUTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of pid %d: %w", pid, err)
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var total int64
	for _, f := range fields[11:15] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		total += v
	}
	return total, nil
}

// WaitQuiet waits, up to 30 s, until pid uses under 3% of a core, so that
// the start's work is not counted as the load's.
func WaitQuiet(ctx context.Context, pid int, progress func(string, ...interface{})) {
	prev, err := ProcCPUTicks(pid)
	for i := 0; i < 30 && err == nil; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		var cur int64
		if cur, err = ProcCPUTicks(pid); err == nil && cur-prev <= 3 {
			return
		}
		prev = cur
	}
	progress("pid %d was still busy before the load (30 s)", pid)
}

// Exec runs a command to its end and returns an error carrying the command
// line and its output when it fails, for setup steps (ip, iptables, tc)
// whose failure is told only on stderr.
func Exec(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
