package etcd

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	snapshotutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// SnapshotInfo describes a saved snapshot.
type SnapshotInfo struct {
	Path string
	// Size in bytes, Revision the store's revision when it was taken,
	// Keys the keys it holds (counted by etcdutl's status check).
	Size     int64
	Revision int64
	Keys     int
	// Version is the etcd version of the member that sent it.
	Version string
}

// Save writes a snapshot of the backend's etcd to path (as etcdctl
// snapshot save: the member's whole database, with its sha256 appended),
// through a .part file renamed once it is complete and synced, then checks
// it as etcdutl snapshot status does. With several endpoints, the member
// that answers is the one snapshotted.
func (b *Backend) Save(ctx context.Context, path string) (SnapshotInfo, error) {
	info := SnapshotInfo{Path: path}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return info, fmt.Errorf("snapshot directory: %w", err)
	}
	part := path + ".part"
	defer os.Remove(part)
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return info, fmt.Errorf("snapshot file: %w", err)
	}
	defer f.Close()
	resp, err := b.Client.SnapshotWithVersion(ctx)
	if err != nil {
		return info, fmt.Errorf("etcd snapshot: %w", err)
	}
	defer resp.Snapshot.Close()
	info.Version = resp.Version
	if info.Size, err = io.Copy(f, resp.Snapshot); err != nil {
		return info, fmt.Errorf("etcd snapshot: receiving: %w", err)
	}
	// etcd appends the sha256 of the database; the size tells it is there
	// (the database is a whole number of 512-byte pages).
	if info.Size%512 != sha256.Size {
		return info, fmt.Errorf("etcd snapshot: %d bytes without the sha256 etcd appends: the stream was cut", info.Size)
	}
	if err := f.Sync(); err != nil {
		return info, fmt.Errorf("etcd snapshot: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return info, fmt.Errorf("etcd snapshot: %w", err)
	}
	if err := os.Rename(part, path); err != nil {
		return info, fmt.Errorf("etcd snapshot: %w", err)
	}
	st, err := snapshotutl.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return info, fmt.Errorf("etcd snapshot %s does not read back: %w", path, err)
	}
	info.Revision, info.Keys = st.Revision, st.TotalKey
	return info, nil
}

// RestoreConfig says where a snapshot is restored.
type RestoreConfig struct {
	// Snapshot is the file petrelctl etcd snapshot save (or a scheduled
	// snapshot) wrote.
	Snapshot string
	// DataDir is the server's data dir: the member's data goes in
	// <DataDir>/etcd, which must not hold a member (MoveAside moves it).
	DataDir string
	// Name and PeerURL are the new member's (empty: the defaults).
	Name, PeerURL string
	// MoveAside renames an existing <DataDir>/etcd to etcd.old-<time>
	// instead of refusing.
	MoveAside bool
}

// RestoreRevisionBump is how far a restore moves the store's revision
// ahead (and marks everything before compacted), as Kubernetes advises: a
// client that watched the cluster after the snapshot was taken must not see
// revisions go back; its watch fails as compacted and it lists again.
const RestoreRevisionBump = 1_000_000_000

// Restore makes <DataDir>/etcd a new one-member cluster from a snapshot
// (etcdutl snapshot restore). The member keeps the data; the servers that
// were its peers are not members of it: they join it again with fresh data
// dirs. It returns the path an older member was moved to, if any.
func Restore(cfg RestoreConfig) (movedTo string, err error) {
	if cfg.Name == "" {
		cfg.Name = DefaultMemberName
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = DefaultPeerURL
	}
	if _, err := tlsURL("--etcd-peer-url", cfg.PeerURL); err != nil {
		return "", err
	}
	if _, err := os.Stat(cfg.Snapshot); err != nil {
		return "", fmt.Errorf("snapshot: %w", err)
	}
	dir := filepath.Join(cfg.DataDir, "etcd")
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		if !cfg.MoveAside {
			return "", fmt.Errorf("%s holds an etcd member already: move it away first (a restore makes a new cluster)", dir)
		}
		movedTo = fmt.Sprintf("%s.old-%s", dir, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(dir, movedTo); err != nil {
			return "", fmt.Errorf("moving the old member aside: %w", err)
		}
	} else if err == nil {
		_ = os.Remove(dir)
	}
	err = snapshotutl.NewV3(zap.NewNop()).Restore(snapshotutl.RestoreConfig{
		SnapshotPath: cfg.Snapshot, Name: cfg.Name, OutputDataDir: dir,
		PeerURLs: []string{cfg.PeerURL}, InitialCluster: cfg.Name + "=" + cfg.PeerURL,
		// The embedded etcd's own (embed.NewConfig's default).
		InitialClusterToken: "etcd-cluster",
		RevisionBump:        RestoreRevisionBump, MarkCompacted: true,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		if movedTo != "" {
			_ = os.Rename(movedTo, dir)
			movedTo = ""
		}
		return "", fmt.Errorf("restoring %s into %s: %w", cfg.Snapshot, dir, err)
	}
	return movedTo, nil
}

// SnapshotDir is where scheduled snapshots go: <data-dir>/db/snapshots.
func SnapshotDir(dataDir string) string { return filepath.Join(dataDir, "db", "snapshots") }

// snapshotPrefix opens the name of every scheduled snapshot.
const snapshotPrefix = "petrel-etcd-"

// SaveScheduled writes a scheduled snapshot into dir, named
// petrel-etcd-<member>-<UTC time>.db, and then removes the oldest scheduled
// snapshots beyond retain (0 keeps all).
func (b *Backend) SaveScheduled(ctx context.Context, dir, member string, retain int, now time.Time) (SnapshotInfo, error) {
	name := fmt.Sprintf("%s%s-%s.db", snapshotPrefix, member, now.UTC().Format("20060102T150405.000Z"))
	info, err := b.Save(ctx, filepath.Join(dir, name))
	if err != nil {
		return info, err
	}
	return info, PruneSnapshots(dir, retain)
}

// PruneSnapshots keeps the retain newest scheduled snapshots in dir (by
// name: the time is in it) and removes the rest; files of other names stay.
func PruneSnapshots(dir string, retain int) error {
	if retain <= 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("snapshots: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, snapshotPrefix) && strings.HasSuffix(n, ".db") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var errs []error
	for len(names) > retain {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			errs = append(errs, err)
		} else {
			slog.Info("etcd snapshot removed (retention)", "file", names[0], "retain", retain)
		}
		names = names[1:]
	}
	return errors.Join(errs...)
}
