package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/controlplane/apiserver"
	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/controlplane/pki"
	"github.com/petrel-project/petrel/jointoken"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestCheckIdentity: the first data dir records its CA in etcd; a data dir
// without a CA, or with another cluster's, is refused with both hashes.
func TestCheckIdentity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := etcd.Start(ctx, etcd.Config{DataDir: t.TempDir(),
		ClientURL: fmt.Sprintf("https://127.0.0.1:%d", freePort(t)), PeerURL: fmt.Sprintf("https://127.0.0.1:%d", freePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	create := func(dir string) func() ([]byte, error) {
		return func() ([]byte, error) {
			ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
			if err != nil {
				return nil, err
			}
			return ca.CertPEM, nil
		}
	}
	first := t.TempDir()
	if err := checkIdentity(ctx, b.Client, first, b.Endpoints, create(first)); err != nil {
		t.Fatalf("first server: %v", err)
	}
	if err := checkIdentity(ctx, b.Client, first, b.Endpoints, create(first)); err != nil {
		t.Fatalf("first server, restarted: %v", err)
	}
	want, _ := localCAHash(first)

	fresh := t.TempDir()
	err = checkIdentity(ctx, b.Client, fresh, b.Endpoints, create(fresh))
	if err == nil || !strings.Contains(err.Error(), "--join") || !strings.Contains(err.Error(), want) {
		t.Fatalf("a fresh data dir on a cluster's etcd: %v; want a refusal that says --join and names %s", err, want)
	}
	if h, _ := localCAHash(fresh); h != "" {
		t.Fatal("the refused server made a CA of its own")
	}

	other := t.TempDir()
	if _, err := create(other)(); err != nil {
		t.Fatal(err)
	}
	have, _ := localCAHash(other)
	err = checkIdentity(ctx, b.Client, other, b.Endpoints, create(other))
	if err == nil || !strings.Contains(err.Error(), have) || !strings.Contains(err.Error(), want) {
		t.Fatalf("another cluster's data dir: %v; want a refusal naming %s and %s", err, have, want)
	}
}

// TestServeJoinForbidden: a node's bootstrap token (no server group) is
// refused the cluster's keys.
func TestServeJoinForbidden(t *testing.T) {
	s := &Server{opts: Options{DataDir: t.TempDir()}}
	req := httptest.NewRequest(http.MethodPost, serverJoinPath, strings.NewReader("{}"))
	req = req.WithContext(apiserver.WithUser(req.Context(), apiserver.User{Name: "system:bootstrap:abcdef",
		Groups: []string{"system:bootstrappers", "system:authenticated"}}))
	w := httptest.NewRecorder()
	s.serveJoin(w, req)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), ServerTokenFile) {
		t.Fatalf("node token: %d %s; want 403 naming %s", w.Code, w.Body, ServerTokenFile)
	}
}

// TestJoinClusterRefusesOtherCA: joining with a data dir made by another
// cluster fails before anything is fetched, naming both CA hashes.
func TestJoinClusterRefusesOtherCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	have := jointoken.CAHash(ca.Cert)
	tok := jointoken.Token{CAHash: strings.Repeat("ab", 32), ID: "abcdef", Secret: "0123456789abcdef"}
	_, _, err = joinCluster(context.Background(), Options{DataDir: dir, Join: "https://127.0.0.1:1", Token: tok.String()})
	if err == nil || !strings.Contains(err.Error(), have) || !strings.Contains(err.Error(), tok.CAHash) {
		t.Fatalf("join = %v; want a refusal naming %s and %s", err, have, tok.CAHash)
	}
	if _, _, err := joinCluster(context.Background(), Options{DataDir: dir, Join: "https://127.0.0.1:1", Token: tok.Bootstrap()}); err == nil ||
		!strings.Contains(err.Error(), "pin the CA") {
		t.Fatalf("join without a CA hash = %v; want a refusal", err)
	}
}
