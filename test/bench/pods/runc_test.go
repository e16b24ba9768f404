package pods

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/petrel-project/petrel/dataplane/runtime"
	"github.com/petrel-project/petrel/test/images"
)

// TestRuncRunsStartsAndCleansUp runs the bare-runc floor on a few
// containers: each start is timed, the call returns while the containers
// still run (a detached container must not hold the bench on a pipe), and
// nothing is left behind — no bundle, no runc state, no cgroup in any
// hierarchy. The same for crun, the node's default runtime.
func TestRuncRunsStartsAndCleansUp(t *testing.T) {
	for _, oci := range []string{"runc", "crun"} {
		t.Run(oci, func(t *testing.T) { testOCIRuns(t, oci) })
	}
}

func testOCIRuns(t *testing.T, oci string) {
	if os.Geteuid() != 0 {
		t.Skip(oci + " needs root")
	}
	for _, bin := range []string{oci, images.Busybox} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (make deps installs it)", bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), oci)
	took, err := ociRuns(ctx, oci, dir, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(took) != 5 {
		t.Fatalf("got %d timings, want 5", len(took))
	}
	for i, d := range took {
		// sleep 3600 runs on after runc returns; a start that waited for
		// the container would take the whole hour or hit the timeout.
		if d <= 0 || d > time.Minute {
			t.Errorf("start %d took %v", i, d)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there (stat: %v)", dir, err)
	}
	roots, err := runtime.CgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) == 0 {
		t.Fatal("no cgroup hierarchy is mounted")
	}
	for _, root := range roots {
		if _, err := os.Stat(filepath.Join(root, runcCgroup())); !os.IsNotExist(err) {
			t.Errorf("cgroup %s is still there in %s (stat: %v)", runcCgroup(), root, err)
		}
	}
}
