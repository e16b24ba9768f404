package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/petrel-project/petrel/dataplane/runtime"
)

// runImage runs `petrelctl image ARGS...` in this process and returns its
// error and how long it took.
func runImage(t *testing.T, args ...string) (error, time.Duration) {
	t.Helper()
	cmd := imageCommand()
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	start := time.Now()
	err := cmd.Execute()
	return err, time.Since(start)
}

// TestImageListWithoutContainerd: with no containerd at the data dir,
// `image list` fails at once and says which socket it looked for and what to
// do (it waited 10 s and said `did not serve within 10s: <nil>`).
func TestImageListWithoutContainerd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd", "containerd.sock")
	check := func(t *testing.T, err error, took time.Duration, wants ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		if took > 3*time.Second {
			t.Errorf("took %s to fail", took)
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if strings.Contains(err.Error(), "<nil>") {
			t.Errorf("error %q", err)
		}
	}
	t.Run("no socket", func(t *testing.T) {
		err, took := runImage(t, "list", "--data-dir", dir)
		check(t, err, took, "no containerd socket at "+sock, "petrel up", "petrel node", "--data-dir", "--containerd-address")
	})
	t.Run("socket nobody serves", func(t *testing.T) {
		// What a node that was killed leaves behind.
		if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		err, took := runImage(t, "list", "--containerd-address", sock)
		check(t, err, took, sock, "petrel up", "petrel node")
	})
	t.Run("bad output", func(t *testing.T) {
		err, took := runImage(t, "list", "--data-dir", dir, "-o", "yaml")
		check(t, err, took, "-o must be table or json")
	})
}

// TestImageListJSON: -o json prints the images as one JSON object.
func TestImageListJSON(t *testing.T) {
	imgs := []corev1.ContainerImage{{Names: []string{"petrel.local/testserver:1", "sha256:abc"}, SizeBytes: 5 << 20}}
	var out bytes.Buffer
	if err := printImages(&out, "json", imgs); err != nil {
		t.Fatal(err)
	}
	var got imageList
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, out.String())
	}
	if len(got.Images) != 1 || got.Images[0].Names[1] != "sha256:abc" || got.Images[0].SizeBytes != 5<<20 {
		t.Fatalf("got %+v", got)
	}
	out.Reset()
	if err := printImages(&out, "table", imgs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "petrel.local/testserver:1") || !strings.Contains(out.String(), "5.0M") {
		t.Fatalf("table: %s", out.String())
	}
}

// TestImageListFromContainerd: against a containerd at the data dir's
// socket, as the node runs it, `image list -o json` prints one object with
// an images list (empty, not null, on a new node).
func TestImageListFromContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Skip("containerd is not installed (make deps installs it)")
	}
	dir, err := os.MkdirTemp("", "petrelctl-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := runtime.Start(ctx, filepath.Join(dir, "containerd"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		_ = os.RemoveAll(dir)
	})
	cmd := imageCommand()
	var out bytes.Buffer
	cmd.SetArgs([]string{"list", "--data-dir", dir, "-o", "json"})
	cmd.SetOut(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || string(got["images"]) != "[]" {
		t.Fatalf("want {\"images\": []}, got %v: %s", err, out.String())
	}
}
