package etcd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAddMember grows the embedded etcd to two members sharing one etcd CA,
// as a joining server does: the second starts from the initial cluster the
// first answered, and sees the first's data.
func TestAddMember(t *testing.T) {
	a, _ := startTest(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := a.Client.Put(ctx, "/k", "before-join"); err != nil {
		t.Fatal(err)
	}
	// The joining server gets the etcd CA (cert and key), never makes its own.
	bDir := t.TempDir()
	if err := os.MkdirAll(PKIDir(bDir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		data, err := os.ReadFile(filepath.Join(PKIDir(a.dataDir), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(PKIDir(bDir), f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := freePorts(t, 2)
	bCfg := Config{DataDir: bDir, ClientURL: fmt.Sprintf("https://127.0.0.1:%d", p[0]), PeerURL: fmt.Sprintf("https://127.0.0.1:%d", p[1])}
	name, err := MemberName("host", bCfg.PeerURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddMember(ctx, name, "http://127.0.0.1:1"); err == nil {
		t.Fatal("a plaintext peer URL was added")
	}
	initial, err := a.AddMember(ctx, name, bCfg.PeerURL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(initial, DefaultMemberName+"=https://") || !strings.Contains(initial, name+"="+bCfg.PeerURL) {
		t.Fatalf("initial cluster %q lacks a member", initial)
	}
	// Asked again (the joiner failed after the add): nothing is added twice.
	if again, err := a.AddMember(ctx, name, bCfg.PeerURL); err != nil || again != initial {
		t.Fatalf("second add = %q, %v; want %q", again, err, initial)
	}
	bCfg.Name, bCfg.InitialCluster = name, initial
	b, err := Start(ctx, bCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	resp, err := b.Client.Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "before-join" {
		t.Fatalf("the new member does not see the data: %v %v", resp, err)
	}
	list, err := b.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !list[0].Started() || !list[1].Started() {
		t.Fatalf("members = %+v; want two started", list)
	}
}
