package e2e

import (
	"os"
	"testing"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestMain removes the binaries the tests built for themselves.
func TestMain(m *testing.M) {
	code := m.Run()
	cluster.RemoveBuilt()
	os.Exit(code)
}
