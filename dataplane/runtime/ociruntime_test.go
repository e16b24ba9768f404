package runtime

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDetectOCIRuntimes: auto prefers crun, a named runtime must be one
// Petrel knows and installed, and a handler the node lacks is refused with
// the list it has.
func TestDetectOCIRuntimes(t *testing.T) {
	if _, err := DetectOCIRuntimes("kata"); err == nil || !strings.Contains(err.Error(), "--oci-runtime takes crun, runc or auto") {
		t.Fatalf("unknown runtime: %v", err)
	}
	rt, err := DetectOCIRuntimes("auto")
	if _, lerr := exec.LookPath("runc"); lerr != nil {
		t.Skip("runc is not installed (make deps installs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, lerr := exec.LookPath("crun"); lerr == nil && rt.Unusable["crun"] == "" && rt.Default != "crun" {
		t.Fatalf("crun is installed and usable, yet the default is %s", rt.Default)
	}
	if _, _, _, err := rt.Binary("kata"); err == nil || !strings.Contains(err.Error(), "it has ") {
		t.Fatalf("a missing handler: %v", err)
	}
	name, path, _, err := rt.Binary("runc")
	if err != nil || name != "runc" || !strings.HasSuffix(path, "/runc") {
		t.Fatalf("runc: %s %s %v", name, path, err)
	}
	if v := rt.SpecVersions["runc"]; v == "" {
		t.Fatal("no spec version read from runc spec")
	}
}
