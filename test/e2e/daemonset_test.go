package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
)

const daemonSetManifest = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {role: worker}
      containers: [{name: agent, image: petrel.local/testserver:1}]
`

// TestDaemonSet: one pod per eligible node, following nodes that are
// labelled, added and removed, a rolling update of the template, pods and
// revisions labelled with the template's hash, and a failed daemon pod
// deleted and replaced.
func TestDaemonSet(t *testing.T) {
	s := cluster.StartServer(t)
	s.StartSimulatedNodes("ds", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		out, err := s.Kubectl(ctx, stdin, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	poll(t, "three nodes", 30*time.Second, func() error {
		if out, _ := s.Kubectl(ctx, "", "get", "nodes", "-o", "name"); len(strings.Fields(out)) != 3 {
			return fmt.Errorf("nodes: %q", out)
		}
		return nil
	})
	kubectl("", "label", "node", "ds-0", "ds-1", "role=worker")
	kubectl(daemonSetManifest, "apply", "-f", "-")
	podNodes := func(want string) {
		t.Helper()
		poll(t, "daemon pods on "+want, 30*time.Second, func() error {
			out, err := s.Kubectl(ctx, "", "get", "pods", "-l", "app=agent", "-o",
				"jsonpath={range .items[?(@.status.phase=='Running')]}{.spec.nodeName} {end}")
			if err != nil {
				return err
			}
			got := strings.Fields(out)
			sort.Strings(got)
			if strings.Join(got, ",") != want {
				return fmt.Errorf("running on %v", got)
			}
			all, _ := s.Kubectl(ctx, "", "get", "pods", "-l", "app=agent", "-o", "name")
			if len(strings.Fields(all)) != len(got) {
				return fmt.Errorf("%d pods, %d running", len(strings.Fields(all)), len(got))
			}
			return nil
		})
	}
	podNodes("ds-0,ds-1")
	kubectl("", "label", "node", "ds-2", "role=worker")
	podNodes("ds-0,ds-1,ds-2")
	kubectl("", "label", "node", "ds-0", "role-")
	podNodes("ds-1,ds-2")
	kubectl("", "delete", "node", "ds-1")
	podNodes("ds-2")
	kubectl("", "set", "image", "daemonset/agent", "agent=petrel.local/testserver:2")
	if out, err := s.Kubectl(ctx, "", "rollout", "status", "daemonset/agent", "--timeout=60s"); err != nil {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	poll(t, "updated daemon pod", 30*time.Second, func() error {
		out, _ := s.Kubectl(ctx, "", "get", "pods", "-l", "app=agent", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}")
		if strings.TrimSpace(out) != "petrel.local/testserver:2" {
			return fmt.Errorf("images %q", out)
		}
		return nil
	})
	// The newest revision and the pod carry the same bare hash, as
	// Kubernetes labels them (the conformance suite matches them by it).
	revHash := kubectl("", "get", "controllerrevisions", "-l", "app=agent", "--sort-by=.revision", "-o",
		"jsonpath={.items[-1:].metadata.labels.controller-revision-hash}")
	podHash := kubectl("", "get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[*].metadata.labels.controller-revision-hash}")
	if revHash == "" || strings.Contains(revHash, "agent") || podHash != revHash {
		t.Fatalf("revision hash %q, pod hash %q: want the same bare hash", revHash, podHash)
	}
	failed := kubectl("", "get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[0].metadata.name}")
	kubectl("", "patch", "pod", failed, "--subresource=status", "--type=merge", "-p", `{"status":{"phase":"Failed"}}`)
	poll(t, "failed daemon pod replaced", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pods", "-l", "app=agent", "-o",
			"jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}")
		if err != nil {
			return err
		}
		if strings.Contains(out, failed+"=") {
			return fmt.Errorf("failed pod %s still there: %s", failed, out)
		}
		if fields := strings.Fields(out); len(fields) != 1 || !strings.HasSuffix(fields[0], "=Running") {
			return fmt.Errorf("pods %q, want one new Running pod", out)
		}
		return nil
	})
}
