package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// moduleTool is the program $env names, or the command pkg at version built
// once from its Go module (through the Go module proxy) into a cache beside
// Go's build cache, so later runs reuse it: the tools users bring
// (metrics-server, helm) run as released, not as copies in this tree.
func moduleTool(t *testing.T, env, pkg, version string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	cacheOut, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	name := path.Base(pkg)
	dir := filepath.Join(filepath.Dir(strings.TrimSpace(string(cacheOut))), "petrel-test-tools", name+"-"+version)
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("building %s@%s once (cached in %s; set %s to use another)", pkg, version, dir, env)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	run := func(args ...string) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		run("mod", "init", "petrel-test-tools/"+name)
	}
	run("get", "-tool", pkg+"@"+version)
	run("build", "-o", bin+".tmp", pkg)
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// hostService is the manifest of a Service in kube-system whose one endpoint
// is a server this test runs on the host at 127.0.0.1:port (an aggregated
// API server, a metrics adapter), on the Service's port 443.
func hostService(name string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: %[2]d}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{name: https, port: %[2]d, protocol: TCP}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
`, name, port)
}
