package kubelet

import (
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/identifiers"
)

// TestContainerIDs: every run of a container gets an identifier containerd
// accepts, whatever the container's name (Kubernetes allows 63
// characters), that no other run shares, and that leads back to its pod.
func TestContainerIDs(t *testing.T) {
	const uid = "0f8fad5b-d9cb-469f-a165-70867728950e"
	for _, name := range []string{"c", "web-server", strings.Repeat("a", 63), "x" + strings.Repeat("-y", 31)} {
		a, b := containerID(uid, name, 12), containerID(uid, name, 12)
		for _, id := range []string{a, b} {
			if err := identifiers.Validate(id); err != nil {
				t.Errorf("container %q: %v", name, err)
			}
			if got, ok := podUIDOf(id); !ok || got != uid {
				t.Errorf("id %s leads to pod %q, want %s", id, got, uid)
			}
		}
		if a == b {
			t.Errorf("two runs of container %q share the id %s", name, a)
		}
	}
}
