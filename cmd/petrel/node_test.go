package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-project/petrel/dataplane/node"
)

// TestCleanupDoesEveryStep: `petrel node --cleanup` removes what it can
// (here the pinned programs' directory) even when a step before fails (here
// the pods: no containerd answers), and then reports the failure.
func TestCleanupDoesEveryStep(t *testing.T) {
	opts := node.DefaultOptions()
	opts.NodeName = "cleanup-test"
	opts.DataDir = t.TempDir()
	opts.ContainerdAddress = filepath.Join(t.TempDir(), "containerd.sock") // nothing listens
	opts.PinDir = filepath.Join(t.TempDir(), "pins")
	opts.LocalDNS = netip.Addr{} // the machine's lo is left alone
	opts.CgroupRoot = "petrel-cleanup-test-absent"
	if err := os.MkdirAll(filepath.Join(opts.PinDir, "links"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := cleanupNode(ctx, opts)
	if err == nil {
		t.Fatal("cleanup said nothing of the pods it could not reach")
	}
	if _, statErr := os.Stat(opts.PinDir); !os.IsNotExist(statErr) {
		t.Fatalf("the pins were left after the pods' step failed (%v); cleanup said: %v", statErr, err)
	}
}
