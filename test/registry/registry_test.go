package registry

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/images"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPushAndCount: the registry takes a pushed image only with its login,
// refuses an anonymous read with 401, and its access log counts both.
func TestPushAndCount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := Start(t, freePort(t), Options{TLS: true})
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Push(ctx, archive, "petrel/probe:v1"); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, r.URL()+"/v2/petrel/probe/manifests/v1", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous HEAD: %s, want 401", resp.Status)
	}
	req.SetBasicAuth(r.Username, r.Password)
	if resp, err = r.client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD with the login: %s", resp.Status)
	}
	time.Sleep(200 * time.Millisecond) // the access log is written after the answer
	if n := r.Requests(http.MethodHead, "/v2/petrel/probe/manifests/", 200); n != 1 {
		t.Fatalf("%d HEADs answered 200 counted, want 1", n)
	}
	if n := r.Requests(http.MethodHead, "/v2/petrel/probe/manifests/", 401); n < 1 {
		t.Fatalf("%d HEADs answered 401 counted, want at least 1", n)
	}
}
