package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/petrel-project/petrel/controlplane/etcd"
)

// parseSnapshotSchedule reads --etcd-snapshot-schedule: a plain interval
// ("30m", "6h"), or a cron spec of five fields or a descriptor ("0 */6 * *
// *", "@hourly", "@every 30m"), as k3s takes. Empty: no schedule (nil).
func parseSnapshotSchedule(spec string) (cron.Schedule, error) {
	if spec == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(spec); err == nil {
		if d < time.Second {
			return nil, fmt.Errorf("--etcd-snapshot-schedule %q: an interval of at least 1s", spec)
		}
		return cron.Every(d), nil
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("--etcd-snapshot-schedule %q: want an interval (30m) or a cron spec (\"0 */6 * * *\", @hourly, \"@every 30m\"): %w", spec, err)
	}
	return sched, nil
}

// runSnapshots saves a snapshot of etcd into dir at each time of the
// schedule, keeping the retain newest, until ctx ends. Every server takes
// its own (of the member it reaches), as k3s does.
func runSnapshots(ctx context.Context, b *etcd.Backend, sched cron.Schedule, dir, member string, retain int) {
	slog.Info("etcd snapshots scheduled", "dir", dir, "retain", retain, "next", sched.Next(time.Now()).Format(time.RFC3339))
	for {
		next := sched.Next(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		start := time.Now()
		info, err := b.SaveScheduled(sctx, dir, member, retain, start)
		cancel()
		if err != nil {
			slog.Error("etcd snapshot", "dir", dir, "err", err)
			continue
		}
		slog.Info("etcd snapshot saved", "file", info.Path, "bytes", info.Size, "revision", info.Revision, "keys", info.Keys, "took", time.Since(start).Round(time.Millisecond))
	}
}

// restoreSnapshot is --cluster-reset-restore-path: before the embedded
// member starts, its data is replaced by the snapshot's, as a new
// one-member cluster (the old data is moved aside, never deleted).
//
// A server restarted with the same flag and snapshot does not restore it
// again (it would drop what was written since): <data-dir>/etcd-restored
// records the snapshot's digest.
func restoreSnapshot(opts Options, memberName string) error {
	digest, err := fileDigest(opts.ClusterResetRestorePath)
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path: %w", err)
	}
	marker := filepath.Join(opts.DataDir, restoredMarkerFile)
	if b, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(b)) == digest {
		slog.Warn("--cluster-reset-restore-path: this snapshot was restored already; starting on the data since (restart without the flag)",
			"snapshot", opts.ClusterResetRestorePath)
		return nil
	}
	moved, err := etcd.Restore(etcd.RestoreConfig{Snapshot: opts.ClusterResetRestorePath, DataDir: opts.DataDir,
		Name: memberName, PeerURL: opts.EtcdPeerURL, MoveAside: true})
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path: %w", err)
	}
	if err := os.WriteFile(marker, []byte(digest+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", marker, err)
	}
	slog.Info("etcd restored from a snapshot: a new one-member cluster; other servers join it again with fresh data dirs",
		"snapshot", opts.ClusterResetRestorePath, "old member moved to", moved)
	return nil
}

// restoredMarkerFile records the digest of the last snapshot restored.
const restoredMarkerFile = "etcd-restored"

// fileDigest is the sha256 of a file, in hex.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
