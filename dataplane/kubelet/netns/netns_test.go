package netns

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNetNSRemovableAfterIPNetns: `ip netns add` run on the node after pods
// started must not make their namespaces impossible to remove. iproute2
// bind-mounts /run/netns over itself when it is no mount point, which hid
// the pods' namespace mounts below a copy: unmounting the copy left the
// original, and removing the file failed with EBUSY for ever.
//
// The test runs in a mount namespace of its own, with a /run of its own, so
// nothing it mounts is seen outside.
func TestNetNSRemovableAfterIPNetns(t *testing.T) {
	if os.Getenv("PETREL_TEST_NETNS_CHILD") == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for mount and network namespaces (CI runs as root)")
		}
		if _, err := exec.LookPath("ip"); err != nil {
			t.Skip("iproute2's ip is not installed")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestNetNSRemovableAfterIPNetns$", "-test.v")
		cmd.Env = append(os.Environ(), "PETREL_TEST_NETNS_CHILD=1")
		// Go makes the new mount namespace's mounts private, so the child's
		// mounts never reach the machine's.
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("in a mount namespace of its own: %v\n%s", err, out)
		}
		return
	}
	// A fresh /run, where /run/netns is a plain directory, as after boot.
	if err := unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount a tmpfs on /run: %v", err)
	}
	// A pod from before the node started (the node was upgraded), then the
	// node's start, a pod, and another tool's namespace.
	before := Path("test-pod-before")
	if err := New(before); err != nil {
		t.Fatal(err)
	}
	if err := PrepareDir(); err != nil {
		t.Fatalf("prepare %s: %v", Dir, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(before, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		t.Fatalf("the namespace from before the start is no longer mounted at %s (%v)", before, err)
	}
	path := Path("test-pod")
	if err := New(path); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "add", "other-tool").CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	for _, p := range []string{before, path} {
		if err := Remove(p); err != nil {
			t.Fatalf("remove the pod's namespace after ip netns add: %v", err)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), "petrel-test-pod") {
		t.Fatalf("a pod's namespace is still mounted:\n%s", mounts)
	}
}
