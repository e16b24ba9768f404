package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/petrel-project/petrel/test/images"
)

// startContainerd runs a containerd for the test, or skips where it cannot.
func startContainerd(t *testing.T) *Containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	for _, bin := range []string{"containerd", "runc", images.Busybox} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (make deps installs it)", bin)
		}
	}
	dir, err := os.MkdirTemp("", "petrel-rt-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		// containerd leaves its snapshot mounts behind only while running.
		_ = os.RemoveAll(dir)
	})
	return c
}

func TestImportAndRun(t *testing.T) {
	c := startContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	names, err := Import(ctx, c.Client, archive)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != images.TestServer {
		t.Fatalf("imported %v, want [%s]", names, images.TestServer)
	}
	list, err := NodeImages(ctx, c.Client)
	if err != nil || len(list) != 1 || list[0].Names[0] != images.TestServer || list[0].SizeBytes == 0 {
		t.Fatalf("node images %+v (%v)", list, err)
	}
	if _, err := EnsureImage(ctx, c.Client, "petrel.local/absent:1", false); !errors.Is(err, ErrImageNotPresent) {
		t.Fatalf("missing image with pull not allowed: %v", err)
	}
	// A pull from a registry that is not there (a closed port on loopback)
	// says what to do instead, and containerd's client keeps its retry
	// lines off the node's terminal.
	var logged bytes.Buffer
	log.L.Logger.SetOutput(&logged)
	_, err = EnsureImage(ctx, c.Client, "127.0.0.1:1/petrel/absent:1", true)
	log.L.Logger.SetOutput(os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "petrelctl image import") {
		t.Fatalf("a failed pull says %v, want what to do without a registry", err)
	}
	if logged.Len() > 0 {
		t.Fatalf("the pull logged to the terminal:\n%s", logged.String())
	}
	img, err := EnsureImage(ctx, c.Client, images.TestServer, false)
	if err != nil {
		t.Fatal(err)
	}

	// A container that prints its hostname and a mounted file, then exits 3.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "msg"), []byte("mounted"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctr, err := CreateContainer(ctx, c.Client, ContainerConfig{
		ID: "rt-test-" + filepath.Base(dir), Image: img, Hostname: "box",
		Command: []string{"sh", "-c", `echo "$(hostname) $(cat /data/msg) $GREETING"; exit 3`},
		Env:     []string{"GREETING=hi"},
		NetNS:   "", Mounts: []specs.Mount{{Destination: "/data/msg", Type: "bind", Source: filepath.Join(dir, "msg"), Options: []string{"rbind", "ro"}}},
		CgroupsPath: "/petrel-rt-test/" + filepath.Base(dir),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := RemoveContainer(context.Background(), ctr, time.Second); err != nil {
			t.Error(err)
		}
		for _, h := range []string{"unified", "memory", "cpu", "pids"} {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", h, "petrel-rt-test"))
		}
	}()
	logPath := filepath.Join(dir, "log")
	if _, err := StartTask(ctx, ctr, LogFile(logPath)); err != nil {
		t.Fatal(err)
	}
	var st TaskState
	for i := 0; i < 100; i++ {
		if st, err = State(ctx, ctr); err != nil {
			t.Fatal(err)
		}
		if !st.Running {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !st.Exists || st.Running || st.ExitCode != 3 {
		t.Fatalf("state %+v, want exited with 3", st)
	}
	out, _ := os.ReadFile(logPath)
	if strings.TrimSpace(string(out)) != "box mounted hi" {
		t.Fatalf("log %q", out)
	}
}

// testImage builds the test image, imports it into c and returns it.
func testImage(ctx context.Context, t *testing.T, c *Containerd) containerd.Image {
	t.Helper()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Import(ctx, c.Client, archive); err != nil {
		t.Fatal(err)
	}
	img, err := EnsureImage(ctx, c.Client, images.TestServer, false)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// shimsOf counts the live shim processes serving container id.
func shimsOf(t *testing.T, id string) int {
	t.Helper()
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), "containerd-shim") && strings.Contains(string(b), id) {
			n++
		}
	}
	return n
}

// TestContainersOutliveContainerd is what a node restart relies on: the
// task keeps running while containerd is down, a new containerd adopts it,
// and removing it then leaves no shim behind.
func TestContainersOutliveContainerd(t *testing.T) {
	c := startContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := testImage(ctx, t, c)
	id := "rt-outlive-" + filepath.Base(t.TempDir())
	ctr, err := CreateContainer(ctx, c.Client, ContainerConfig{ID: id, Image: img, Command: []string{"sleep", "1000"}, CgroupsPath: "/petrel-rt-test/" + id})
	if err != nil {
		t.Fatal(err)
	}
	task, err := StartTask(ctx, ctr, LogFile(filepath.Join(t.TempDir(), "log")))
	if err != nil {
		t.Fatal(err)
	}
	pid := task.Pid()
	dir := filepath.Dir(c.Address)
	c.Stop()
	if err := syscall.Kill(int(pid), 0); err != nil {
		t.Fatalf("the container's process died with containerd: %v", err)
	}
	c2, err := Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop()
	ctr, err = c2.Client.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := State(ctx, ctr); err != nil || !st.Running || st.Pid != pid {
		t.Fatalf("adopted state %+v (%v), want running as pid %d", st, err, pid)
	}
	// A kill (a failed liveness probe) keeps the stopped task: its exit is
	// how the kubelet counts the restart. sleep as PID 1 ignores SIGTERM.
	if err := KillTask(ctx, ctr, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st, err := State(ctx, ctr); err != nil || !st.Exists || st.Running || st.ExitCode != 137 {
		t.Fatalf("state after the kill %+v (%v), want a stopped task that exited with 137", st, err)
	}
	if err := RemoveContainer(ctx, ctr, time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; shimsOf(t, id) > 0; i++ {
		if i == 50 {
			t.Fatalf("a shim of %s outlived its container", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := RemoveCgroup("petrel-rt-test"); err != nil {
		t.Error(err)
	}
}

func TestArgv(t *testing.T) {
	ep, cmd := []string{"/entry"}, []string{"default"}
	for _, c := range []struct {
		command, args []string
		want          string
	}{
		{nil, nil, "/entry default"},
		{nil, []string{"x"}, "/entry x"},
		{[]string{"sh"}, nil, "sh"},
		{[]string{"sh", "-c"}, []string{"echo"}, "sh -c echo"},
	} {
		if got := strings.Join(Argv(c.command, c.args, ep, cmd), " "); got != c.want {
			t.Errorf("Argv(%v, %v) = %q, want %q", c.command, c.args, got, c.want)
		}
	}
}

// TestSupervisedContainerdComesBack kills the node's containerd: the
// supervisor starts it again and the client serves once more.
func TestSupervisedContainerdComesBack(t *testing.T) {
	c := startContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c.mu.Lock()
	pid := c.cmd.Process.Pid
	c.mu.Unlock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		c.mu.Lock()
		newPid := c.cmd.Process.Pid
		c.mu.Unlock()
		if newPid != pid {
			if ok, err := c.Client.IsServing(ctx); ok && err == nil {
				return
			}
		}
		if i == 200 {
			t.Fatal("containerd was not restarted within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKillAllShimsFreesATaskWithoutState is the cleanup of a node stopped in
// the middle of a container's start: the runtime's state of the task is
// missing, so its shim cannot delete it; once the shims are killed,
// containerd drops the task and the container is removed, no shim left.
func TestKillAllShimsFreesATaskWithoutState(t *testing.T) {
	c := startContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img := testImage(ctx, t, c)
	// runc's shim takes runc's "does not exist" for a deleted task; crun
	// words it otherwise, and the delete fails.
	if _, err := exec.LookPath(OCIRuntimeCrun); err != nil {
		t.Skip("crun is not installed (make deps installs it)")
	}
	if err := PrepareCrun(); err != nil {
		t.Fatal(err)
	}
	rts, err := DetectOCIRuntimes(OCIRuntimeCrun)
	if err != nil {
		t.Fatal(err)
	}
	_, crun, version, err := rts.Binary(OCIRuntimeCrun)
	if err != nil {
		t.Fatal(err)
	}
	id := "rt-nostate-" + filepath.Base(t.TempDir())
	ctr, err := CreateContainer(ctx, c.Client, ContainerConfig{ID: id, Image: img, Command: []string{"sleep", "1000"}, CgroupsPath: "/petrel-rt-test/" + id,
		OCIRuntime: crun, OCISpecVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = RemoveCgroup("petrel-rt-test") }()
	task, err := StartTask(ctx, ctr, LogFile(filepath.Join(t.TempDir(), "log")))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(task.Pid()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join("/run/containerd/runc", Namespace, id)
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("the runtime's state of the task is not where the shim keeps it: %v", err)
	}
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := RemoveContainer(ctx, ctr, 100*time.Millisecond); err == nil {
		t.Fatal("a task without its runtime state was removed through its shim: the case this test makes did not happen")
	}
	if err := c.KillAllShims(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var rerr error
	for i := 0; i < 50; i++ {
		if rerr = RemoveContainer(ctx, ctr, 100*time.Millisecond); rerr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rerr != nil {
		t.Fatalf("after the shims were killed: %v", rerr)
	}
	// containerd runs the shim binary once more to clean up after the dead
	// one: that one ends by itself.
	for i := 0; shimsOf(t, id) > 0; i++ {
		if i == 50 {
			t.Fatalf("a shim of %s outlived its container", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
