package serverlb

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fake is an API server that names itself and can be made unready.
type fake struct {
	*httptest.Server
	name    string
	unready atomic.Bool
}

func newFake(t *testing.T, name string) *fake {
	f := &fake{name: name}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && f.unready.Load() {
			http.Error(w, "etcd", http.StatusInternalServerError)
			return
		}
		if r.URL.Path == "/watch" {
			// A long request, as a watch is: it ends when the client's
			// connection does.
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		io.WriteString(w, f.name)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) hostPort() string { return strings.TrimPrefix(f.URL, "https://") }

func get(t *testing.T, lb *LB, path string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	resp, err := c.Get(lb.URL() + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestFailover(t *testing.T) {
	HealthInterval = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := newFake(t, "a"), newFake(t, "b")
	// The health checks verify the servers (httptest's certificate, the
	// same for both) as the node's do with the cluster CA.
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Certificate().Raw})
	lb, err := Start(ctx, []string{a.hostPort(), b.hostPort()}, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, lb, "/"); err != nil || got != "a" {
		t.Fatalf("first request: %q, %v; want a", got, err)
	}

	// A watch on a; a turns unready (its etcd lost): the watch's connection
	// is closed and new requests go to b.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(lb.URL() + "/watch")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, resp.Body); close(ended) }()
	a.unready.Store(true)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch through a was not cut when a became unready")
	}
	if got, err := get(t, lb, "/"); err != nil || got != "b" {
		t.Fatalf("after a became unready: %q, %v; want b", got, err)
	}
	if lb.Current() != b.hostPort() {
		t.Fatalf("current %s, want %s", lb.Current(), b.hostPort())
	}

	// b dies (refuses connects): a, ready again, answers at once.
	a.unready.Store(false)
	b.Close()
	if got, err := get(t, lb, "/"); err != nil || got != "a" {
		t.Fatalf("after b died: %q, %v; want a", got, err)
	}
}

func TestLearned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := newFake(t, "a"), newFake(t, "b")
	// A seed that nothing serves: the learned server answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	lb, err := Start(ctx, []string{dead}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, lb, "/"); err == nil {
		t.Fatal("a request with no server up succeeded")
	}
	lb.SetLearned([]string{b.hostPort(), a.hostPort()})
	if got := lb.Servers(); len(got) != 3 || got[0] != dead {
		t.Fatalf("servers %v: want the seed first, then the learned", got)
	}
	if got, err := get(t, lb, "/"); err != nil || got != "b" {
		t.Fatalf("with learned servers: %q, %v; want b", got, err)
	}
}

func TestParseServers(t *testing.T) {
	got, err := ParseServers([]string{"https://10.0.0.1:6443", "https://node-b", "https://10.0.0.1:6443"})
	if err != nil || len(got) != 2 || got[0] != "10.0.0.1:6443" || got[1] != "node-b:6443" {
		t.Fatalf("ParseServers: %v, %v", got, err)
	}
	if _, err := ParseServers([]string{"http://10.0.0.1:6443"}); err == nil {
		t.Fatal("http accepted")
	}
}

// TestLearnedKept: the servers learned are kept in the state file, and a
// load balancer started again with a dead seed finds them there.
func TestLearnedKept(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := newFake(t, "b")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	state := filepath.Join(t.TempDir(), "servers")
	first, err := StartWithState(ctx, []string{dead}, nil, state)
	if err != nil {
		t.Fatal(err)
	}
	first.SetLearned([]string{b.hostPort()})
	second, err := StartWithState(ctx, []string{dead}, nil, state)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, second, "/"); err != nil || got != "b" {
		t.Fatalf("restarted with a dead seed: %q, %v; want b from the kept servers", got, err)
	}
}
