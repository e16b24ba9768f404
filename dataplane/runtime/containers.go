package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/distribution/reference"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
)

// ErrImageNotPresent says the image is not in containerd and may not be
// pulled (imagePullPolicy Never).
var ErrImageNotPresent = errors.New("image is not present")

// NormalizeImage turns a Kubernetes image reference into containerd's full
// name (busybox → docker.io/library/busybox:latest).
func NormalizeImage(image string) (string, error) {
	ref, err := reference.ParseDockerRef(image)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", image, err)
	}
	return ref.String(), nil
}

// EnsureImage returns the image, pulling it when it is missing and pull is
// allowed.
func EnsureImage(ctx context.Context, c *containerd.Client, image string, pull bool) (containerd.Image, error) {
	name, err := NormalizeImage(image)
	if err != nil {
		return nil, err
	}
	img, err := c.GetImage(ctx, name)
	if err == nil {
		return img, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("look up image %s: %w", name, err)
	}
	if !pull {
		return nil, fmt.Errorf("%w: %s (import it with petrelctl image import)", ErrImageNotPresent, name)
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// The resolver logs every host it fails to reach at info level to the
	// node's terminal, once per pull and host; the error returned says it.
	pctx = log.WithLogger(pctx, quietLog)
	img, err = c.Pull(pctx, name, containerd.WithPullUnpack, containerd.WithPullSnapshotter(Snapshotter))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w (%s)", name, err, PullHint)
	}
	return img, nil
}

// PullHint says what to do when no registry is reachable from the node.
const PullHint = "if no registry is reachable from this node, load the image from an OCI or Docker archive with `petrelctl image import FILE.tar`"

// quietLog drops the containerd client's own log lines.
var quietLog = func() *log.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}()

// ContainerConfig is one container as the kubelet wants it run.
type ContainerConfig struct {
	ID     string
	Image  containerd.Image
	Labels map[string]string
	// Command replaces the image's entrypoint; Args its cmd (Kubernetes'
	// rules: args alone keep the entrypoint).
	Command, Args []string
	Env           []string
	WorkingDir    string
	Hostname      string
	// NetNS is the pod's network namespace, which every container joins;
	// empty for the host's (hostNetwork pods).
	NetNS string
	// PIDNS, when set, is a process namespace to join (an ephemeral
	// container's target's, /proc/<pid>/ns/pid).
	PIDNS       string
	Mounts      []specs.Mount
	CgroupsPath string
	// MemoryLimit in bytes, 0 for none; CPUShares and CPUQuota (µs per
	// 100 ms period), 0 for none.
	MemoryLimit    int64
	CPUShares      uint64
	CPUQuota       int64
	UID, GID       *int64
	ReadOnlyRootfs bool
	TTY            bool
	// Privileged gives the container every capability, the host's devices
	// and writable /sys; NoNewPrivileges keeps its processes from gaining
	// privileges (setuid binaries, file capabilities). CapAdd and CapDrop
	// change the default capabilities ("ALL" in CapDrop drops all of them
	// first); names without the CAP_ prefix, as Kubernetes writes them.
	Privileged, NoNewPrivileges bool
	CapAdd, CapDrop             []string
	// OCIRuntime is the binary containerd's runc shim runs the container
	// with (crun, runc); empty: the shim's own default, runc.
	OCIRuntime string
	// OCISpecVersion, when set, is the ociVersion the spec says (the
	// version OCIRuntime writes itself).
	OCISpecVersion string
	// Sysctls are set in the container's namespaces (the pod's network
	// namespace for net.*, the container's IPC namespace for kernel.*) by
	// the OCI runtime before the process starts.
	Sysctls map[string]string
}

// Argv is the process the container runs, from the pod's command and args
// over the image's entrypoint and cmd as Kubernetes combines them.
func Argv(command, args, entrypoint, cmd []string) []string {
	switch {
	case len(command) > 0:
		return append(append([]string{}, command...), args...)
	case len(args) > 0:
		return append(append([]string{}, entrypoint...), args...)
	default:
		return append(append([]string{}, entrypoint...), cmd...)
	}
}

// CreateContainer creates the container with a fresh snapshot of its image.
func CreateContainer(ctx context.Context, c *containerd.Client, cfg ContainerConfig) (containerd.Container, error) {
	spec, err := cfg.Image.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the config of image %s: %w", cfg.Image.Name(), err)
	}
	argv := Argv(cfg.Command, cfg.Args, spec.Config.Entrypoint, spec.Config.Cmd)
	if len(argv) == 0 {
		return nil, fmt.Errorf("image %s has no entrypoint or cmd and the container sets no command", cfg.Image.Name())
	}
	opts := []oci.SpecOpts{
		oci.WithDefaultSpec(), oci.WithDefaultUnixDevices,
		oci.WithImageConfig(cfg.Image),
		oci.WithProcessArgs(argv...),
		oci.WithEnv(cfg.Env),
		oci.WithMounts(cfg.Mounts),
		oci.WithCgroup(cfg.CgroupsPath),
	}
	if cfg.NetNS != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: cfg.NetNS}))
	} else {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	}
	if cfg.PIDNS != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: cfg.PIDNS}))
	}
	if cfg.Hostname != "" {
		opts = append(opts, oci.WithHostname(cfg.Hostname))
	}
	if cfg.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(cfg.WorkingDir))
	}
	if cfg.MemoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(cfg.MemoryLimit)))
	}
	if cfg.CPUShares > 0 {
		opts = append(opts, oci.WithCPUShares(cfg.CPUShares))
	}
	if cfg.CPUQuota > 0 {
		opts = append(opts, oci.WithCPUCFS(cfg.CPUQuota, 100000))
	}
	if cfg.UID != nil {
		gid := uint32(0)
		if cfg.GID != nil {
			gid = uint32(*cfg.GID)
		}
		opts = append(opts, oci.WithUIDGID(uint32(*cfg.UID), gid))
	}
	if cfg.ReadOnlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if cfg.TTY {
		opts = append(opts, oci.WithTTY)
	}
	if len(cfg.Sysctls) > 0 {
		opts = append(opts, withSysctls(cfg.Sysctls))
	}
	if cfg.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	} else {
		opts = append(opts, capabilityOpts(cfg.CapAdd, cfg.CapDrop)...)
	}
	// Set either way: containerd's default spec turns no_new_privs on,
	// while Kubernetes leaves escalation allowed unless a pod refuses it.
	opts = append(opts, withNoNewPrivileges(cfg.NoNewPrivileges))
	if cfg.OCISpecVersion != "" {
		opts = append(opts, withSpecVersion(cfg.OCISpecVersion))
	}
	copts := []containerd.NewContainerOpts{
		containerd.WithImage(cfg.Image),
		containerd.WithSnapshotter(Snapshotter),
		containerd.WithNewSnapshot(cfg.ID, cfg.Image),
		containerd.WithContainerLabels(cfg.Labels),
		containerd.WithNewSpec(opts...)}
	if cfg.OCIRuntime != "" {
		copts = append(copts, withOCIRuntime(cfg.OCIRuntime))
	}
	ctr, err := c.NewContainer(ctx, cfg.ID, copts...)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	return ctr, nil
}

// LogFile has the shim append the container's output to path as it comes.
func LogFile(path string) cio.Creator { return cio.LogFile(path) }

// StartTask starts the container's process with its output going where
// logs says.
func StartTask(ctx context.Context, ctr containerd.Container, logs cio.Creator) (containerd.Task, error) {
	task, err := ctr.NewTask(ctx, logs)
	if err != nil {
		return nil, fmt.Errorf("create task of %s: %w", ctr.ID(), err)
	}
	if err := task.Start(ctx); err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return nil, fmt.Errorf("start %s: %w", ctr.ID(), err)
	}
	return task, nil
}

// TaskState is what the kubelet needs to know of a container's process.
type TaskState struct {
	// Exists is false when the container has no task (never started, or
	// deleted after it exited).
	Exists   bool
	Running  bool
	Pid      uint32
	ExitCode uint32
	ExitedAt time.Time
}

// State reads the container's task.
func State(ctx context.Context, ctr containerd.Container) (TaskState, error) {
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return TaskState{}, nil
	}
	if err != nil {
		return TaskState{}, err
	}
	st, err := task.Status(ctx)
	if errdefs.IsNotFound(err) {
		// Deleted between the two questions: as gone as if never found.
		return TaskState{}, nil
	}
	if err != nil {
		return TaskState{}, err
	}
	ts := TaskState{Exists: true, Pid: task.Pid()}
	switch st.Status {
	case containerd.Running, containerd.Paused, containerd.Pausing, containerd.Created:
		ts.Running = true
	case containerd.Stopped:
		ts.ExitCode, ts.ExitedAt = st.ExitStatus, st.ExitTime
	}
	return ts, nil
}

// StopTask sends SIGTERM, waits up to grace, then SIGKILL, and deletes the
// task. A container without a task is already stopped.
func StopTask(ctx context.Context, ctr containerd.Container, grace time.Duration) error {
	task, err := killTask(ctx, ctr, grace)
	if err != nil || task == nil {
		return err
	}
	if _, err := task.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete task of %s: %w", ctr.ID(), err)
	}
	return nil
}

// KillTask sends SIGTERM, waits up to grace, then SIGKILL, and waits for the
// process to exit. Unlike StopTask it keeps the stopped task: its exit code
// and time are how the kubelet learns that the run ended and counts the
// restart.
func KillTask(ctx context.Context, ctr containerd.Container, grace time.Duration) error {
	_, err := killTask(ctx, ctr, grace)
	return err
}

// killTask stops the container's process and returns its task, nil when
// it has none.
func killTask(ctx context.Context, ctr containerd.Container, grace time.Duration) (containerd.Task, error) {
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load the task of %s: %w", ctr.ID(), err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for %s: %w", ctr.ID(), err)
	}
	if st, err := task.Status(ctx); err == nil && st.Status != containerd.Stopped {
		if grace > 0 {
			if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("signal %s: %w", ctr.ID(), err)
			}
			select {
			case <-exited:
			case <-time.After(grace):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if st, err := task.Status(ctx); err == nil && st.Status != containerd.Stopped {
			if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("kill %s: %w", ctr.ID(), err)
			}
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				return nil, fmt.Errorf("%s did not exit after SIGKILL", ctr.ID())
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	return task, nil
}

// RemoveContainer stops the container's task and deletes the container and
// its snapshot.
func RemoveContainer(ctx context.Context, ctr containerd.Container, grace time.Duration) error {
	if err := StopTask(ctx, ctr, grace); err != nil {
		return err
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", ctr.ID(), err)
	}
	return nil
}

// ExecIO is where an exec'd process reads and writes; nil streams are
// not connected. With TTY, stderr goes to Stdout.
type ExecIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	// Resize carries terminal sizes (width, height) while the process runs.
	Resize <-chan [2]uint32
}

// Exec runs a command in the container's namespaces and cgroup, as the
// container's process runs, and returns its exit code. It is killed when
// ctx ends.
func Exec(ctx context.Context, ctr containerd.Container, args []string, eio ExecIO) (int, error) {
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return -1, fmt.Errorf("container %s is not running: %w", ctr.ID(), err)
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return -1, err
	}
	pspec := *spec.Process
	pspec.Args = args
	pspec.Terminal = eio.TTY
	id := fmt.Sprintf("exec-%d", execSeq.Add(1))
	// The process sees end of input when the caller's stdin ends.
	var proc containerd.Process
	stdinDone := make(chan struct{})
	stdin := eio.Stdin
	if stdin != nil {
		stdin = &eofNotifier{r: stdin, done: stdinDone}
	}
	opts := []cio.Opt{cio.WithStreams(stdin, eio.Stdout, eio.Stderr)}
	if eio.TTY {
		opts = append(opts, cio.WithTerminal)
	}
	proc, err = task.Exec(ctx, id, &pspec, cio.NewCreator(opts...))
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", ctr.ID(), err)
	}
	defer func() { _, _ = proc.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill) }()
	exited, err := proc.Wait(ctx)
	if err != nil {
		return -1, err
	}
	if err := proc.Start(ctx); err != nil {
		return -1, fmt.Errorf("exec %v in %s: %w", args, ctr.ID(), err)
	}
	if stdin != nil {
		go func() {
			select {
			case <-stdinDone:
				_ = proc.CloseIO(ctx, containerd.WithStdinCloser)
			case <-ctx.Done():
			}
		}()
	}
	for {
		select {
		case size := <-eio.Resize:
			_ = proc.Resize(ctx, size[0], size[1])
		case st := <-exited:
			proc.IO().Wait()
			return int(st.ExitCode()), st.Error()
		case <-ctx.Done():
			_ = proc.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
			return -1, ctx.Err()
		}
	}
}

// eofNotifier closes done when its reader ends.
type eofNotifier struct {
	r    io.Reader
	done chan struct{}
	once sync.Once
}

func (e *eofNotifier) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.done) })
	}
	return n, err
}

var execSeq atomic.Uint64

// withSysctls adds sysctls to the spec's Linux section.
func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

// capabilityOpts changes the default capabilities as a container's
// securityContext.capabilities asks: drops first, then adds.
func capabilityOpts(add, drop []string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	names := func(in []string) (out []string, all bool) {
		for _, c := range in {
			c = strings.ToUpper(c)
			if c == "ALL" {
				all = true
				continue
			}
			if !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			out = append(out, c)
		}
		return out, all
	}
	dropped, dropAll := names(drop)
	added, addAll := names(add)
	switch {
	case addAll:
		opts = append(opts, oci.WithAllCurrentCapabilities)
	case dropAll:
		opts = append(opts, oci.WithCapabilities(nil))
	}
	if len(dropped) > 0 && !addAll {
		opts = append(opts, oci.WithDroppedCapabilities(dropped))
	}
	if len(added) > 0 {
		opts = append(opts, oci.WithAddedCapabilities(added))
	}
	return opts
}

// withNoNewPrivileges sets the process's no_new_privs flag to on.
func withNoNewPrivileges(on bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.NoNewPrivileges = on
		return nil
	}
}
