package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestMakeRunShowsProgress: `make run` says what each long step does before
// it starts (deps, build, images, then the cluster), so a first run on a new
// machine, minutes long, does not look stuck. Read with `make -n`, which
// prints the recipes without running them.
func TestMakeRunShowsProgress(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	cmd := exec.Command("make", "-n", "run", "DATA_DIR="+t.TempDir())
	cmd.Dir = cluster.RepoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	for _, step := range []struct{ command, says string }{
		{"hack/deps.sh", "deps"},
		{"bin/petrel ./cmd/petrel", "build"},
		{"test/images/build", "images"},
		{"petrel up", "petrel up"},
	} {
		// The step's first command (not the line announcing it).
		i := 0
		for i < len(lines) && (strings.HasPrefix(lines[i], "echo") || !strings.Contains(lines[i], step.command)) {
			i++
		}
		if i == len(lines) {
			t.Fatalf("no %q in make -n run:\n%s", step.command, out)
		}
		announced := i > 0 && strings.HasPrefix(lines[i-1], `echo "==> `+step.says)
		if !announced || step.says != "petrel up" && !strings.Contains(lines[i-1], "first") {
			t.Errorf("no line saying what %q does and how long it takes before it:\n%s", step.command, strings.Join(lines[max(0, i-1):i+1], "\n"))
		}
	}
}
