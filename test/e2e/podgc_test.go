package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
)

const ghostManifest = `apiVersion: v1
kind: Node
metadata: {name: ghost}
---
apiVersion: v1
kind: Pod
metadata: {name: haunted, namespace: default}
spec:
  nodeName: ghost
  containers: [{name: c, image: petrel.local/testserver:1}]
`

// TestPodGC: a pod bound to a node that is deleted is collected, since no
// kubelet will ever confirm it gone.
func TestPodGC(t *testing.T) {
	s := cluster.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := s.Kubectl(ctx, ghostManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	// A graceful delete of a bound pod waits for its kubelet: it stays.
	if out, err := s.Kubectl(ctx, "", "delete", "pod", "haunted", "--wait=false"); err != nil {
		t.Fatalf("kubectl delete pod: %v\n%s", err, out)
	}
	time.Sleep(time.Second)
	if out, _ := s.Kubectl(ctx, "", "get", "pod", "haunted", "-o", "jsonpath={.metadata.deletionTimestamp}"); out == "" {
		t.Fatalf("the bound pod should wait for its kubelet, got %q", out)
	}
	if out, err := s.Kubectl(ctx, "", "delete", "node", "ghost"); err != nil {
		t.Fatalf("kubectl delete node: %v\n%s", err, out)
	}
	poll(t, "pod collected", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pods", "-o", "name")
		if err != nil {
			return err
		}
		if strings.Contains(out, "haunted") {
			return fmt.Errorf("still there")
		}
		return nil
	})
}
