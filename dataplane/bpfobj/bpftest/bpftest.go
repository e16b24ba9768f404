// Package bpftest gives privileged tests a throw-away cgroup and pin
// directory for the socket load balancer, and cleans them up.
package bpftest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Require skips the test where BPF cannot be loaded: not root, or no
// cgroup v2. In CI (root) it runs.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs (CI runs as root)")
	}
	if _, err := bpfobj.CgroupV2Mount(); err != nil {
		t.Skipf("needs cgroup v2: %v", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("cannot lift the memlock limit: %v", err)
	}
}

// Env is a cgroup and a pin directory owned by one test.
type Env struct {
	Cgroup string
	PinDir string
}

// New makes a cgroup under the cgroup v2 root and a pin directory, both
// removed when the test ends (programs detached first).
func New(t testing.TB) *Env {
	t.Helper()
	Require(t)
	root, _ := bpfobj.CgroupV2Mount()
	name := fmt.Sprintf("petrel-test-%d-%s", os.Getpid(), sanitize(t.Name()))
	e := &Env{Cgroup: filepath.Join(root, name), PinDir: filepath.Join(bpfobj.BPFFSRoot, name)}
	if err := os.Mkdir(e.Cgroup, 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := bpfobj.Remove(e.PinDir); err != nil {
			t.Errorf("remove pins: %v", err)
		}
		if err := os.Remove(e.Cgroup); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	return e
}

// Enter moves this whole test process into the cgroup, so its sockets are
// load balanced, and moves it back when the test ends.
func (e *Env) Enter(t testing.TB) {
	t.Helper()
	prev, err := currentCgroup()
	if err != nil {
		t.Fatal(err)
	}
	root, _ := bpfobj.CgroupV2Mount()
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(e.Cgroup, "cgroup.procs"), pid, 0); err != nil {
		t.Fatalf("enter test cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(filepath.Join(root, prev, "cgroup.procs"), pid, 0); err != nil {
			t.Errorf("leave test cgroup: %v", err)
		}
	})
}

// currentCgroup is this process's path in the v2 hierarchy ("0::/path").
func currentCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 entry in /proc/self/cgroup")
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '-'
		}
		return r
	}, s)
}
