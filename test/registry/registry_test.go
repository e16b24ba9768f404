package registry

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

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

// TestPushPadded: a padded image is the archive's image with one more
// layer of the size asked for (random bytes do not compress), and two
// padded pushes share no pad layer; the registry runs without a test too
// (Run and Stop, as the benchmark uses it).
func TestPushPadded(t *testing.T) {
	if err := Available(Options{}); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Run(ctx, filepath.Join(t.TempDir(), "registry"), freePort(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	}()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const pad = 2 << 20
	layers := func(repo string) []ocispec.Descriptor {
		t.Helper()
		if err := r.PushPadded(ctx, archive, repo+":v1", pad); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/v2/"+repo+"/manifests/v1", nil)
		req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m ocispec.Manifest
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("manifest of %s: %s, %v", repo, resp.Status, err)
		}
		return m.Layers
	}
	a, b := layers("petrel/pad-a"), layers("petrel/pad-b")
	if len(a) < 2 || len(a) != len(b) {
		t.Fatalf("layers: %d and %d, want the archive's and one more in both", len(a), len(b))
	}
	last := a[len(a)-1]
	if last.Size < pad || last.Size > pad+pad/10 {
		t.Errorf("pad layer is %d bytes on the wire, want about %d", last.Size, pad)
	}
	if last.Digest == b[len(b)-1].Digest {
		t.Errorf("two padded pushes share the pad layer %s", last.Digest)
	}
	if a[0].Digest != b[0].Digest {
		t.Errorf("the archive's own layers differ: %s and %s", a[0].Digest, b[0].Digest)
	}
}
