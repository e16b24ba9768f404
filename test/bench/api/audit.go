package api

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/bench"
)

// metadataEverything is an audit policy that records every request at
// Metadata level, the level the goal names.
const metadataEverything = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"

// runAuditCost measures what the audit log costs the create path: creates/s
// of a server that audits every request at Metadata level against one with
// no audit log, each on its own fresh server and embedded etcd, in
// alternating rounds so that drift of the machine falls on both.
func runAuditCost(ctx context.Context, o Options, rep *bench.Report, progress func(string, ...interface{})) error {
	dir, err := os.MkdirTemp("", "petrel-bench-audit-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(metadataEverything), 0o600); err != nil {
		return err
	}
	modes := []struct {
		name string
		args []string
	}{
		{"no_audit", []string{"--audit-log-path", "none"}},
		{"metadata_audit", []string{"--audit-policy-file", policy, "--audit-log-path", filepath.Join(dir, "audit.log")}},
	}
	const rounds = 2
	sums := map[string]float64{}
	value := make([]byte, 200)
	for i := range value {
		value[i] = 'x'
	}
	for r := 0; r < rounds; r++ {
		for _, m := range modes {
			progress("audit cost: creates with %s (round %d of %d), %d clients, %s", m.name, r+1, rounds, o.Concurrency, o.Duration)
			sp, err := bench.StartServer(ctx, o.Petrel, m.args...)
			if err != nil {
				return err
			}
			_, cs, err := sp.Client()
			if err != nil {
				sp.Stop()
				return err
			}
			rate, err := bench.RunFor(o.Concurrency, o.Duration, func(w, i int) error {
				_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("a-%d-%d", w, i)},
					Data: map[string]string{"v": string(value)}}, metav1.CreateOptions{})
				return err
			})
			sp.Stop()
			if err != nil {
				return fmt.Errorf("creates with %s: %w", m.name, err)
			}
			sums[m.name] += rate
		}
	}
	rep.AddRatio(fmt.Sprintf("creates_per_second_%d_clients_metadata_audit", o.Concurrency), "creates/s", sums["metadata_audit"]/rounds,
		"no_audit_log", sums["no_audit"]/rounds, "higher", 0.9)
	return nil
}
