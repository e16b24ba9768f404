package runtime

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConnectNamesWhatWasMissing: when no socket ever appears the error says
// so (it said `did not serve within 10s: <nil>`).
func TestConnectNamesWhatWasMissing(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock")
	c := &Containerd{Address: sock}
	err := c.connect(context.Background(), 200*time.Millisecond)
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if strings.Contains(err.Error(), "<nil>") || !strings.Contains(err.Error(), "no socket at "+sock) {
		t.Fatalf("error %q", err)
	}
}
