package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"golang.org/x/sys/unix"
)

// TaskIO is where a pod container's process reads and writes: its output
// goes to a logging binary that writes the CRI log and serves the raw
// output on an attach socket; with Stdin, a named pipe feeds it, which the
// shim holds open so that attach clients may come and go.
type TaskIO struct {
	// Logger is the logging binary (petrel-logger); LogPath the log file.
	Logger, LogPath string
	// Dir holds this run's named pipes and attach socket.
	Dir   string
	Stdin bool
	TTY   bool
}

// AttachSocket is where the logger of the run with IO directory dir
// serves the container's raw output.
func AttachSocket(dir string) string { return filepath.Join(dir, "attach") }

// StdinPipe is the named pipe the container of the run with IO directory
// dir reads its stdin from.
func StdinPipe(dir string) string { return filepath.Join(dir, "stdin") }

// ioConfig is a fixed IO set: the shim does every copy.
type ioConfig struct{ cfg cio.Config }

func (i ioConfig) Config() cio.Config { return i.cfg }
func (ioConfig) Cancel()              {}
func (ioConfig) Wait()                {}
func (ioConfig) Close() error         { return nil }

func mkfifo(path string) error {
	_ = os.Remove(path)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return fmt.Errorf("make pipe %s: %w", path, err)
	}
	return nil
}

// StartLoggedTask starts the container's process with the IO tio says.
//
// containerd's logging binaries get only stdout and stderr, so a container
// with stdin and no terminal has its output on named pipes instead, read
// by a petrel-logger the node starts in a session of its own (so it, like
// the shim, outlives the node daemon); it ends when the container's output
// does.
func StartLoggedTask(ctx context.Context, ctr containerd.Container, tio TaskIO) (containerd.Task, error) {
	if err := os.MkdirAll(tio.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("container IO directory: %w", err)
	}
	args := map[string]string{"path": tio.LogPath, "attach": AttachSocket(tio.Dir)}
	var cfg cio.Config
	var logger *exec.Cmd
	if tio.Stdin {
		cfg.Stdin = StdinPipe(tio.Dir)
		if err := mkfifo(cfg.Stdin); err != nil {
			return nil, err
		}
	}
	if tio.Stdin && !tio.TTY {
		cfg.Stdout, cfg.Stderr = filepath.Join(tio.Dir, "stdout"), filepath.Join(tio.Dir, "stderr")
		for _, p := range []string{cfg.Stdout, cfg.Stderr} {
			if err := mkfifo(p); err != nil {
				return nil, err
			}
		}
		args["stdout"], args["stderr"] = cfg.Stdout, cfg.Stderr
		keys := make([]string, 0, len(args))
		for k := range args {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var argv []string
		for _, k := range keys {
			argv = append(argv, k, args[k])
		}
		logger = exec.Command(tio.Logger, argv...)
		logger.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := logger.Start(); err != nil {
			return nil, fmt.Errorf("start the logger of %s: %w", ctr.ID(), err)
		}
		// Reaped here while the node runs; by init after it restarts.
		go func() { _ = logger.Wait() }()
	} else {
		uri, err := cio.LogURIGenerator("binary", tio.Logger, args)
		if err != nil {
			return nil, fmt.Errorf("logging binary: %w", err)
		}
		cfg.Stdout, cfg.Stderr = uri.String(), uri.String()
		cfg.Terminal = tio.TTY
	}
	task, err := StartTask(ctx, ctr, func(string) (cio.IO, error) { return ioConfig{cfg}, nil })
	if err != nil && logger != nil {
		_ = logger.Process.Kill()
	}
	return task, err
}

// Attachable is a running container and how its IO was made, for attach.
type Attachable struct {
	Container containerd.Container
	PodUID    string
	// IODir is the run's directory of named pipes and attach socket.
	IODir                 string
	Stdin, StdinOnce, TTY bool
}

// ErrNoStdin says the container was not started with stdin.
var ErrNoStdin = errors.New("the container was not started with stdin")

// OpenStdin opens the named pipe of a running container's stdin for
// writing. Closing it leaves the container's stdin open (the shim holds
// it); CloseStdin closes that.
func OpenStdin(dir string) (*os.File, error) {
	f, err := os.OpenFile(StdinPipe(dir), os.O_WRONLY|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, ErrNoStdin
	case errors.Is(err, unix.ENXIO):
		return nil, fmt.Errorf("the container no longer reads its stdin")
	case err != nil:
		return nil, err
	}
	return f, nil
}

// CloseStdin closes the container's stdin: it reads end of file.
func CloseStdin(ctx context.Context, ctr containerd.Container) error {
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return err
	}
	return task.CloseIO(ctx, containerd.WithStdinCloser)
}

// ResizeTerminal sets the size of a running container's terminal.
func ResizeTerminal(ctx context.Context, ctr containerd.Container, width, height uint32) error {
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return err
	}
	return task.Resize(ctx, width, height)
}
