package etcd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestSnapshotSaveRestore saves a snapshot of a member, writes after it,
// restores the snapshot into another data dir as a new one-member cluster:
// the keys of the snapshot are there, the later one is not, and the
// revision moved ahead (clients that watched past the snapshot relist).
func TestSnapshotSaveRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, _ := startTest(t, t.TempDir())
	for i := range 10 {
		if _, err := b.Client.Put(ctx, fmt.Sprintf("/registry/k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "snap.db")
	info, err := b.Save(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Keys < 10 || info.Revision < 11 || info.Size == 0 {
		t.Fatalf("snapshot info %+v: want at least the 10 keys written", info)
	}
	after, err := b.Client.Put(ctx, "/registry/after", "v")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file + ".part"); !os.IsNotExist(err) {
		t.Fatalf("the .part file stayed: %v", err)
	}

	dir := t.TempDir()
	p := freePorts(t, 2)
	peer := fmt.Sprintf("https://127.0.0.1:%d", p[1])
	if _, err := Restore(RestoreConfig{Snapshot: file, DataDir: dir, PeerURL: peer}); err != nil {
		t.Fatal(err)
	}
	// A second restore into the same dir refuses, or moves the member aside.
	if _, err := Restore(RestoreConfig{Snapshot: file, DataDir: dir, PeerURL: peer}); err == nil {
		t.Fatal("a restore over a member did not refuse")
	}
	moved, err := Restore(RestoreConfig{Snapshot: file, DataDir: dir, PeerURL: peer, MoveAside: true})
	if err != nil || moved == "" {
		t.Fatalf("restore with MoveAside: moved to %q, %v", moved, err)
	}
	if _, err := os.Stat(filepath.Join(moved, "member")); err != nil {
		t.Fatalf("the old member is not in %s: %v", moved, err)
	}
	r, err := Start(ctx, Config{DataDir: dir, ClientURL: fmt.Sprintf("https://127.0.0.1:%d", p[0]), PeerURL: peer})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	resp, err := r.Client.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	if len(keys) != 10 || slices.Contains(keys, "/registry/after") {
		t.Fatalf("restored keys %v: want k0..k9 and not the key written after the snapshot", keys)
	}
	if resp.Header.Revision < info.Revision+RestoreRevisionBump || resp.Header.Revision <= after.Header.Revision {
		t.Fatalf("restored revision %d: want the snapshot's %d + %d, past %d", resp.Header.Revision, info.Revision, RestoreRevisionBump, after.Header.Revision)
	}
	members, err := r.Members(ctx)
	if err != nil || len(members) != 1 || members[0].PeerURLs[0] != peer {
		t.Fatalf("restored members %+v, %v: want one, at %s", members, err, peer)
	}
}

// TestPruneSnapshots keeps the newest scheduled snapshots and leaves other
// files alone.
func TestPruneSnapshots(t *testing.T) {
	dir := t.TempDir()
	names := []string{"petrel-etcd-m-20260101T000000.000Z.db", "petrel-etcd-m-20260102T000000.000Z.db", "petrel-etcd-m-20260103T000000.000Z.db", "mine.db"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := PruneSnapshots(dir, 2); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := []string{"mine.db", names[1], names[2]}
	if !slices.Equal(got, want) {
		t.Fatalf("after pruning to 2: %v, want %v", got, want)
	}
}
