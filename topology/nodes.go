package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// MetricsPort is where each node of a topology serves /metrics and
// /healthz, on its own address.
const MetricsPort = 10249

// NodeArgs are the `petrel node` arguments that place node n in the
// topology: its name, data directory, cgroups (the socket load balancer on
// its own subtree, never on "/": cgroup hooks see every namespace, so two
// nodes attached at "/" would both rewrite every connect on the machine)
// and metrics on its address. The caller adds how the node reaches the API
// server. Everything else keeps the node's defaults, which are per network
// namespace already (the DNS address, the node server's port, NodePorts on
// the default route's interface).
func (n Node) NodeArgs(dataDir string) []string {
	return []string{"node", "--node-name", n.Name, "--data-dir", dataDir,
		"--lb-cgroup", n.Cgroup, "--cgroup-root", n.PodCgroup,
		"--metrics-address", fmt.Sprintf("%s:%d", n.Address, MetricsPort)}
}

// CleanupArgs are the `petrel node --cleanup` arguments for node n.
func (n Node) CleanupArgs(dataDir string) []string {
	return []string{"node", "--cleanup", "--node-name", n.Name, "--data-dir", dataDir, "--cgroup-root", n.PodCgroup}
}

// HealthURL is the node's /healthz.
func (n Node) HealthURL() string {
	return fmt.Sprintf("http://%s:%d/healthz", n.Address, MetricsPort)
}

// Process is a program running on a node of the topology.
type Process struct {
	Cmd    *exec.Cmd
	Log    string
	exited chan struct{}
}

// StartOnNode starts binary with args on node n (its network namespace and
// daemon cgroup), its output appended to logPath. The process gets SIGTERM
// if the caller dies.
func StartOnNode(n Node, logPath, binary string, args ...string) (*Process, error) {
	cmd := exec.Command(binary, args...)
	release, err := n.Wrap(cmd)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s on node %s: %w", filepath.Base(binary), n.Name, err)
	}
	p := &Process{Cmd: cmd, Log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Signal sends sig and waits up to grace for the process to end, then kills
// it.
func (p *Process) Signal(sig syscall.Signal, grace time.Duration) {
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
}

// WaitHealthy waits until the node answers /healthz, the process ends, or
// ctx ends.
func WaitHealthy(ctx context.Context, n Node, p *Process) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(n.HealthURL())
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("petrel node %s exited during start (log: %s)", n.Name, p.Log)
		case <-ctx.Done():
			return fmt.Errorf("node %s not healthy (log: %s): %w", n.Name, p.Log, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Dial connects from inside namespace of node n (as a process of the node
// that is not in its cgroup: Service addresses are not balanced for it).
// The connection lives on when the node's daemon stops.
func (n Node) Dial(network, address string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := InNetns(n.Name, func() error {
		var err error
		conn, err = net.DialTimeout(network, address, timeout)
		return err
	})
	return conn, err
}

// Cleanup runs `petrel node --cleanup` for node n inside its network
// namespace (and daemon cgroup): it stops and removes the node's pods,
// detaches its programs and removes its pins and node-local DNS address.
// The node daemon must have stopped first.
func (n Node) Cleanup(ctx context.Context, petrel, dataDir string) error {
	cmd := exec.CommandContext(ctx, petrel, n.CleanupArgs(dataDir)...)
	release, err := n.Wrap(cmd)
	if err != nil {
		return fmt.Errorf("cleanup of node %s: %w", n.Name, err)
	}
	defer release()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("petrel node --cleanup of node %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Teardown removes a topology that ran Petrel nodes: Cleanup for every node
// whose namespace is still there (dataDir gives each node's data
// directory), then Remove. It goes on past failures and returns them all.
func (t *Topology) Teardown(ctx context.Context, petrel string, dataDir func(Node) string) error {
	var errs []error
	for _, n := range t.Nodes {
		if _, err := os.Stat(n.Netns); err != nil {
			continue
		}
		if err := n.Cleanup(ctx, petrel, dataDir(n)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := t.Remove(); err != nil {
		errs = append(errs, fmt.Errorf("remove the topology: %w", err))
	}
	return errors.Join(errs...)
}

// StopDaemons ends what runs binary petrel in node n's daemon cgroup (a
// node daemon whose parent crashed, still stopping, say): SIGTERM, up to
// grace to go, then SIGKILL. Processes are found by the cgroup and their
// executable, never by name; the pods' shims and other programs there are
// left alone.
func (n Node) StopDaemons(petrel string, grace time.Duration) {
	mount, err := bpfobj.CgroupV2Mount()
	if err != nil {
		return
	}
	want, err := filepath.EvalSymlinks(petrel)
	if err != nil {
		return
	}
	ours := func() []int {
		b, _ := os.ReadFile(filepath.Join(mount, n.DaemonCgroup, "cgroup.procs"))
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == want {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	for _, pid := range ours() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for len(ours()) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	for _, pid := range ours() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
