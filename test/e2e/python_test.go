package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestPythonClient runs the official Python client (Debian's
// python3-kubernetes under /usr/bin/python3) against a server.
func TestPythonClient(t *testing.T) {
	if out, err := exec.Command("/usr/bin/python3", "-c", "import kubernetes").CombinedOutput(); err != nil {
		t.Skipf("python3-kubernetes is not installed (make test installs it): %s", out)
	}
	s := cluster.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", filepath.Join("python", "client_check.py"), s.Kubeconfig)
	// The system interpreter with its own packages only.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + os.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all checks passed") {
		t.Fatalf("python client: %v\n%s", err, out)
	}
}
