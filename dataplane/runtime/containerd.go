// Package runtime runs the node's containers through containerd: it starts
// and supervises Debian's containerd (with crun or runc) under the node's data
// directory, or connects to one already running, imports images from OCI
// archives, and runs containers with crun or runc through containerd's
// runc shim. Registry pulls are package imagepull's.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// Namespace is the containerd namespace that holds Petrel's images and
// containers, apart from anything else using the same containerd.
const Namespace = "petrel"

// Snapshotter unpacks image layers; overlayfs is containerd's default.
const Snapshotter = "overlayfs"

// Containerd is a running containerd this node talks to.
type Containerd struct {
	// Client is connected with the Petrel namespace as its default.
	Client *containerd.Client
	// Address is the containerd socket.
	Address string
	// Root is containerd's root directory (content and snapshots), on the
	// disk whose usage image GC watches; Connect takes containerd's
	// default, /var/lib/containerd.
	Root string

	// What Start runs and supervises; unset for Connect.
	bin, config, pidFile, logPath string
	stopping, supervised          chan struct{}
	mu                            sync.Mutex
	stopOnce                      sync.Once
	cmd                           *exec.Cmd
	exited                        chan struct{}
}

// configTemplate keeps every path of containerd under one directory, and
// turns the CRI plugin off: the kubelet here is ours and speaks containerd's
// own API.
const configTemplate = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %[3]q

[ttrpc]
  address = "%[3]s.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
`

// Start runs containerd with its root, state and socket under dir and waits
// until it serves. It is stopped by Stop, and killed if this process dies;
// the containers' shims outlive both, so pods keep running.
func Start(ctx context.Context, dir string) (*Containerd, error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd is not installed (apt-get install containerd runc, or pass --containerd-address): %w", err)
	}
	_, errCrun := exec.LookPath(OCIRuntimeCrun)
	if _, err := exec.LookPath(OCIRuntimeRunc); err != nil && errCrun != nil {
		return nil, fmt.Errorf("neither crun nor runc is installed (apt-get install crun runc): %w", err)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	address := filepath.Join(dir, "containerd.sock")
	if len(address) > 100 {
		return nil, fmt.Errorf("containerd socket path %s is too long for a unix socket: use a shorter --data-dir", address)
	}
	config := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf(configTemplate, filepath.Join(dir, "root"), filepath.Join(dir, "state"), address, filepath.Join(dir, "opt"))
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		return nil, err
	}
	pidFile := filepath.Join(dir, "containerd.pid")
	if err := waitPrevious(pidFile, config); err != nil {
		return nil, err
	}
	c := &Containerd{Address: address, Root: filepath.Join(dir, "root"), bin: bin, config: config, pidFile: pidFile, logPath: filepath.Join(dir, "containerd.log"),
		stopping: make(chan struct{}), supervised: make(chan struct{})}
	if err := c.spawn(); err != nil {
		return nil, err
	}
	go c.supervise()
	if err := c.connect(ctx, 30*time.Second); err != nil {
		c.Stop()
		return nil, fmt.Errorf("%w (see %s)", err, c.logPath)
	}
	return c, nil
}

// spawn starts the containerd process and records its PID.
func (c *Containerd) spawn() error {
	logFile, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(c.bin, "--config", c.config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a ^C to the node does not reach it before
	// the node has stopped it in order. No parent-death signal: Linux sends
	// it when the forking thread ends, which Go does not promise against; a
	// containerd left by a killed node is stopped by the next start
	// (waitPrevious).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	if err := os.WriteFile(c.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return err
	}
	slog.Info("runtime: started containerd", "pid", cmd.Process.Pid, "socket", c.Address, "log", c.logPath)
	return nil
}

// supervise restarts containerd when it exits without being asked to; the
// client reconnects by itself, and the shims never stopped.
func (c *Containerd) supervise() {
	defer close(c.supervised)
	backoff := time.Second
	for {
		c.mu.Lock()
		exited := c.exited
		c.mu.Unlock()
		select {
		case <-c.stopping:
			return
		case <-exited:
		}
		select {
		case <-c.stopping:
			return
		default:
		}
		slog.Warn("runtime: containerd exited; restarting it", "log", c.logPath, "after", backoff)
		select {
		case <-c.stopping:
			return
		case <-time.After(backoff):
		}
		if err := c.spawn(); err != nil {
			slog.Error("runtime: restarting containerd failed", "err", err)
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// waitPrevious lets a containerd that an earlier node started on the same
// directory (one killed with its node, say) finish exiting, and kills it by
// its PID if it will not: two would fight over the same state.
func waitPrevious(pidFile, config string) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil
	}
	alive := func() bool {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && strings.Contains(string(cmdline), config)
	}
	for i := 0; alive() && i < 150; i++ {
		if i == 0 {
			slog.Info("runtime: waiting for the previous containerd to exit", "pid", pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if alive() {
		slog.Warn("runtime: killing the previous containerd", "pid", pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill the previous containerd (pid %d): %w", pid, err)
		}
		for i := 0; alive() && i < 50; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// Connect uses a containerd that something else runs.
func Connect(ctx context.Context, address string) (*Containerd, error) {
	c := &Containerd{Address: address, Root: "/var/lib/containerd"}
	if err := c.connect(ctx, 10*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Containerd) connect(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		c.mu.Lock()
		exited := c.exited
		c.mu.Unlock()
		if exited != nil {
			select {
			case <-exited:
				return errors.New("containerd exited during start")
			default:
			}
		}
		if _, err := os.Stat(c.Address); err == nil {
			cl, err := containerd.New(c.Address, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(5*time.Second))
			if err == nil {
				if ok, err := cl.IsServing(ctx); ok && err == nil {
					c.Client = cl
					return nil
				} else {
					lastErr = err
				}
				cl.Close()
			} else {
				lastErr = err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if lastErr == nil {
		// Nothing was ever tried: the socket never appeared.
		lastErr = fmt.Errorf("no socket at %s", c.Address)
	}
	return fmt.Errorf("containerd at %s did not serve within %s: %w", c.Address, timeout, lastErr)
}

// Stop closes the client and, when this node started containerd, stops it.
// Stopping twice is harmless.
func (c *Containerd) Stop() { c.stopOnce.Do(c.stop) }

func (c *Containerd) stop() {
	if c.Client != nil {
		c.Client.Close()
	}
	if c.stopping == nil {
		return
	}
	close(c.stopping)
	<-c.supervised
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// KillStrayShims kills, by PID, the shims serving this containerd whose
// container no longer exists: a shim whose task was deleted while the node
// was stopping can miss its shutdown call and linger.
func (c *Containerd) KillStrayShims(ctx context.Context) error {
	ctrs, err := c.Client.Containers(ctx)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, ctr := range ctrs {
		live[ctr.ID()] = true
	}
	for _, sh := range c.shims() {
		if !live[sh.id] {
			slog.Warn("runtime: killing a shim whose container is gone", "pid", sh.pid, "container", sh.id)
			_ = syscall.Kill(sh.pid, syscall.SIGKILL)
		}
	}
	return nil
}

// KillAllShims kills, by PID, every shim serving this containerd and waits
// up to timeout for them to be gone, for a cleanup that removes every pod:
// a task whose runtime state is missing (the node stopped in the middle of
// its container's start) cannot be deleted through its shim, while a dead
// shim's task is cleaned up by containerd itself.
func (c *Containerd) KillAllShims(ctx context.Context, timeout time.Duration) error {
	for _, sh := range c.shims() {
		slog.Warn("runtime: killing a shim for the cleanup", "pid", sh.pid, "container", sh.id)
		_ = syscall.Kill(sh.pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(timeout)
	for len(c.shims()) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("shims of %s still running %v after SIGKILL", c.Address, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// shim is a containerd shim process: its PID and the container ID it was
// started for.
type shim struct {
	pid int
	id  string
}

// shims lists the shim processes started by this containerd (their
// -address is its socket), from /proc.
func (c *Containerd) shims() []shim {
	var out []shim
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "containerd-shim") {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		var id, address string
		for i := 0; i+1 < len(args); i++ {
			switch args[i] {
			case "-id":
				id = args[i+1]
			case "-address":
				address = args[i+1]
			}
		}
		if address != c.Address || id == "" {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		out = append(out, shim{pid: pid, id: id})
	}
	return out
}
