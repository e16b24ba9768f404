package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
)

const jobsManifest = `apiVersion: batch/v1
kind: Job
metadata: {name: works, namespace: default}
spec:
  completions: 3
  parallelism: 2
  template:
    metadata: {annotations: {simulate.petrel.io/exit-code: "0", simulate.petrel.io/run-seconds: "0.5"}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: petrel.local/testserver:1, command: ["true"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: fails, namespace: default}
spec:
  backoffLimit: 1
  template:
    metadata: {annotations: {simulate.petrel.io/exit-code: "1"}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: petrel.local/testserver:1, command: ["false"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: failjob, namespace: default}
spec:
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - {action: Ignore, onExitCodes: {operator: In, values: [42]}}
    - {action: FailJob, onExitCodes: {containerName: c, operator: In, values: [1]}}
  template:
    metadata: {annotations: {simulate.petrel.io/exit-code: "1"}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: petrel.local/testserver:1, command: ["false"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: indexed, namespace: default}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  ttlSecondsAfterFinished: 3
  template:
    metadata: {annotations: {simulate.petrel.io/exit-code: "0"}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: petrel.local/testserver:1}]
`

// TestJobs runs Jobs on simulated nodes, whose pods exit as their
// annotations say: completions with parallelism, failures up to
// backoffLimit, an Indexed Job and its ttlSecondsAfterFinished.
func TestJobs(t *testing.T) {
	s := cluster.StartServer(t)
	s.StartSimulatedNodes("jobs", 2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := s.Kubectl(ctx, jobsManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if out, err := s.Kubectl(ctx, "", "wait", "--for=condition=complete", "job/works", "--timeout=60s"); err != nil {
		t.Fatalf("kubectl wait complete: %v\n%s", err, out)
	}
	if out, _ := s.Kubectl(ctx, "", "get", "job", "works", "-o", "jsonpath={.status.succeeded}/{.status.failed}"); out != "3/" && out != "3/0" {
		t.Errorf("works: succeeded/failed = %s", out)
	}
	if out, _ := s.Kubectl(ctx, "", "get", "job", "works"); !strings.Contains(out, "Complete") || !strings.Contains(out, "3/3") {
		t.Errorf("kubectl get job:\n%s", out)
	}

	if out, err := s.Kubectl(ctx, "", "wait", "--for=condition=failed", "job/fails", "--timeout=90s"); err != nil {
		t.Fatalf("kubectl wait failed: %v\n%s", err, out)
	}
	out, _ := s.Kubectl(ctx, "", "get", "job", "fails", "-o", "jsonpath={.status.failed} {.status.conditions[?(@.type=='Failed')].reason}")
	if out != "2 BackoffLimitExceeded" {
		t.Errorf("fails: %q, want 2 failures and BackoffLimitExceeded", out)
	}

	// The first failure matches the FailJob rule: no retries up to
	// backoffLimit.
	if out, err := s.Kubectl(ctx, "", "wait", "--for=condition=failed", "job/failjob", "--timeout=60s"); err != nil {
		t.Fatalf("kubectl wait failed: %v\n%s", err, out)
	}
	out, _ = s.Kubectl(ctx, "", "get", "job", "failjob", "-o", "jsonpath={.status.failed} {.status.conditions[?(@.type=='Failed')].reason} {.status.conditions[?(@.type=='Failed')].message}")
	if !strings.HasPrefix(out, "1 PodFailurePolicy Container c for pod default/failjob-") || !strings.HasSuffix(out, "failed with exit code 1 matching FailJob rule at index 1") {
		t.Errorf("failjob: %q, want one failure ended by the FailJob rule", out)
	}
	// A pod failure policy needs restartPolicy Never.
	bad := strings.Replace(strings.Split(jobsManifest, "---")[2], "name: failjob", "name: badpolicy", 1)
	bad = strings.Replace(bad, "restartPolicy: Never", "restartPolicy: OnFailure", 1)
	if out, err := s.Kubectl(ctx, bad, "apply", "-f", "-"); err == nil || !strings.Contains(out, "spec.template.spec.restartPolicy") {
		t.Errorf("podFailurePolicy with restartPolicy OnFailure: %v\n%s", err, out)
	}

	t.Run("orphans adopted, unselected pods released", func(t *testing.T) {
		if out, err := s.Kubectl(ctx, `apiVersion: batch/v1
kind: Job
metadata: {name: adopter, namespace: default}
spec:
  parallelism: 2
  completions: 4
  template:
    metadata: {annotations: {simulate.petrel.io/exit-code: "0", simulate.petrel.io/run-seconds: "600"}}
    spec:
      restartPolicy: Never
      containers: [{name: c, image: petrel.local/testserver:1}]
`, "apply", "-f", "-"); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		var pod string
		poll(t, "two running pods", 30*time.Second, func() error {
			out, err := s.Kubectl(ctx, "", "get", "pods", "-l", "job-name=adopter", "-o", "jsonpath={.items[*].metadata.name}")
			if err != nil || len(strings.Fields(out)) != 2 {
				return fmt.Errorf("pods %q %v", out, err)
			}
			pod = strings.Fields(out)[0]
			return nil
		})
		owner := func() string {
			out, _ := s.Kubectl(ctx, "", "get", "pod", pod, "-o", "jsonpath={.metadata.ownerReferences[?(@.controller==true)].name}")
			return out
		}
		if out, err := s.Kubectl(ctx, "", "patch", "pod", pod, "--type=json", "-p", `[{"op":"remove","path":"/metadata/ownerReferences"}]`); err != nil {
			t.Fatalf("orphan %s: %v\n%s", pod, err, out)
		}
		poll(t, "the orphan adopted again", 30*time.Second, func() error {
			if o := owner(); o != "adopter" {
				return fmt.Errorf("owner %q", o)
			}
			return nil
		})
		if out, err := s.Kubectl(ctx, "", "label", "pod", pod, "job-name-", "batch.kubernetes.io/job-name-", "controller-uid-", "batch.kubernetes.io/controller-uid-"); err != nil {
			t.Fatalf("unlabel %s: %v\n%s", pod, err, out)
		}
		poll(t, "the unselected pod released", 30*time.Second, func() error {
			if o := owner(); o != "" {
				return fmt.Errorf("owner %q", o)
			}
			return nil
		})
	})

	poll(t, "indexed job done, then removed by its TTL", 60*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "jobs", "-o", "name")
		if err != nil {
			return err
		}
		if strings.Contains(out, "job.batch/indexed") {
			return fmt.Errorf("still there: %s", out)
		}
		return nil
	})
	poll(t, "its pods collected", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pods", "-l", "batch.kubernetes.io/job-name=indexed", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("pods = %q (%v)", out, err)
		}
		return nil
	})
}
