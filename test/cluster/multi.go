package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
	"github.com/petrel-project/petrel/topology"
)

// Multi is a multi-node cluster for tests, built as `petrel up --nodes N
// --segments S` builds one (package topology): a `petrel server` in the
// root namespace and N `petrel node` processes, each in its own network
// namespace, cgroup subtree, pin directory and containerd.
type Multi struct {
	*Server
	// Servers are all the servers (Server is the first); with more than
	// one, each has its own address on segment 0 and the same port, and
	// they are joined into one cluster.
	Servers  []*Server
	Topology *topology.Topology
	Nodes    []*MultiNode
}

// MultiNode is one node of a Multi.
type MultiNode struct {
	topology.Node
	t       testing.TB
	DataDir string
	args    []string
	proc    *topology.Process
}

// MultiOptions shape a Multi.
type MultiOptions struct {
	Nodes, Segments int
	// Servers is how many servers to start (default 1); the nodes are
	// given all of them (--server A,B,C).
	Servers int
	// ServerArgs and NodeArgs are extra flags of `petrel server` and of
	// every `petrel node`.
	ServerArgs, NodeArgs []string
}

// StartMulti starts a cluster of nodes in network namespaces; the test's
// cleanup stops every process and removes the namespaces, links, pins,
// cgroups and pods. It skips where BPF cannot be loaded (not root).
func StartMulti(t testing.TB, o MultiOptions) *Multi {
	t.Helper()
	bpftest.Require(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter (util-linux) is not installed: cannot run nodes in network namespaces")
	}
	// Short and per test process: link names are at most 15 bytes.
	name := fmt.Sprintf("m%05x", os.Getpid()&0xfffff)
	topo, err := topology.Build(topology.Spec{Name: name, Nodes: o.Nodes, Segments: o.Segments,
		// One topology at a time on a machine: packages' tests run in parallel.
		Wait: 15 * time.Minute})
	if err != nil {
		t.Fatalf("build the topology: %v", err)
	}
	m := &Multi{Topology: topo}
	for _, tn := range topo.Nodes {
		// Made before the cleanup below is registered, so that they are
		// removed after it (cleanups run last first): the node's cleanup
		// needs its containerd's state to stop its pods.
		m.Nodes = append(m.Nodes, &MultiNode{Node: tn, t: t, DataDir: t.TempDir()})
	}
	t.Cleanup(func() {
		for _, n := range m.Nodes {
			n.Stop()
		}
		for _, n := range m.Nodes {
			if t.Failed() {
				tailLog(t, filepath.Join(n.DataDir, "node.log"))
			}
			n.cleanup()
		}
		if err := topo.Remove(); err != nil {
			t.Errorf("remove the topology: %v", err)
		}
	})
	var server string
	if o.Servers <= 1 {
		s := NewServer(t, append([]string{"--bind-address", "0.0.0.0", "--advertise-address", topo.ServerAddress.String()}, o.ServerArgs...)...)
		s.Start()
		m.Server, m.Servers = s, []*Server{s}
		server = fmt.Sprintf("https://%s:%d", topo.ServerAddress, s.Port)
	} else {
		port := FreePort(t)
		var urls []string
		for k := range o.Servers {
			addr := topo.ServerAddress
			if k > 0 {
				if addr, err = topo.AddServerAddress(k); err != nil {
					t.Fatal(err)
				}
			}
			args := append([]string{"--advertise-address", addr.String()}, o.ServerArgs...)
			if k > 0 {
				args = append(args, m.Servers[0].JoinArgs(t)...)
			}
			s := NewServer(t, args...)
			s.Host, s.Port = addr.String(), port
			s.Start()
			m.Servers = append(m.Servers, s)
			urls = append(urls, s.URL())
		}
		m.Server = m.Servers[0]
		server = strings.Join(urls, ",")
	}
	s := m.Server
	for _, n := range m.Nodes {
		// Each node joins with the server's token, as a machine would: no
		// node holds the admin kubeconfig.
		n.args = append(append(n.NodeArgs(n.DataDir), "--token", s.NodeToken(t), "--server", server), o.NodeArgs...)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(m.Nodes))
	for i, n := range m.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = n.start() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// start starts the node process and waits for its /healthz.
func (n *MultiNode) start() error {
	p, err := topology.StartOnNode(n.Node, filepath.Join(n.DataDir, "node.log"), Binary(n.t), n.args...)
	if err != nil {
		return err
	}
	n.proc = p
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := topology.WaitHealthy(ctx, n.Node, p); err != nil {
		log, _ := os.ReadFile(p.Log)
		return fmt.Errorf("%w\n%s", err, log)
	}
	return nil
}

// Start restarts a stopped node.
func (n *MultiNode) Start() {
	n.t.Helper()
	if err := n.start(); err != nil {
		n.t.Fatal(err)
	}
}

// Kill kills the node daemon as a crash would (its containerd and pods go
// on).
func (n *MultiNode) Kill() { n.signal(syscall.SIGKILL) }

// Stop stops the node daemon in order.
func (n *MultiNode) Stop() { n.signal(syscall.SIGTERM) }

func (n *MultiNode) signal(sig syscall.Signal) {
	if n.proc == nil {
		return
	}
	n.proc.Signal(sig, 30*time.Second)
	n.proc = nil
}

// PowerOff is the machine gone: every process of the node (daemon,
// containerd, shims, pods: all of its cgroup subtree) is killed and its
// network namespace deleted.
func (n *MultiNode) PowerOff() {
	n.t.Helper()
	n.Kill()
	mount, err := bpfobj.CgroupV2Mount()
	if err != nil {
		n.t.Fatal(err)
	}
	// Pods may live in v1 hierarchies' cgroups too, but every process of
	// the node is in its v2 subtree.
	for range 20 {
		pids := cgroupPids(filepath.Join(mount, n.Cgroup))
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "netns", "delete", n.Name).CombinedOutput(); err != nil {
		n.t.Fatalf("delete the namespace of %s: %v\n%s", n.Name, err, out)
	}
}

// cgroupPids lists the processes of a cgroup and its descendants.
func cgroupPids(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// cleanup removes the node's pods, pins and DNS address, inside its
// namespace while that exists.
func (n *MultiNode) cleanup() {
	args := n.CleanupArgs(n.DataDir)
	_, err := os.Stat(n.Netns)
	if err != nil {
		// The machine is gone (PowerOff): its DNS address went with its
		// namespace, and the root namespace's must not be touched.
		args = append(args, "--local-dns-address", "")
	}
	cmd := exec.Command(Binary(n.t), args...)
	if err == nil {
		release, err := n.Wrap(cmd)
		if err != nil {
			n.t.Errorf("cleanup of %s: %v", n.Name, err)
			return
		}
		defer release()
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Errorf("petrel node --cleanup of %s: %v\n%s", n.Name, err, out)
	}
	if _, err := os.Stat(bpfobj.PinDir(n.Name)); err == nil {
		n.t.Errorf("pins left under %s", bpfobj.PinDir(n.Name))
	}
}

// Exec runs a command on the node as one of its host processes would run:
// in its network namespace and its cgroup (so Services answer it through
// the node's socket load balancer). It returns the combined output.
func (n *MultiNode) Exec(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	release, err := n.Wrap(cmd)
	if err != nil {
		return "", err
	}
	defer release()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Petrelctl runs petrelctl against this node's pins.
func (n *MultiNode) Petrelctl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, Petrelctl(n.t), append(args, "--node-name", n.Name)...).CombinedOutput()
	return string(out), err
}

// ImportImage loads an OCI archive into every node's containerd.
func (m *Multi) ImportImage(ctx context.Context, archive string) error {
	for _, n := range m.Nodes {
		out, err := exec.CommandContext(ctx, Petrelctl(m.t), "image", "import", "--data-dir", n.DataDir, archive).CombinedOutput()
		if err != nil {
			return fmt.Errorf("import %s on %s: %v\n%s", archive, n.Name, err, out)
		}
	}
	return nil
}

// InHost runs a command in an outside host's network namespace.
func InHost(ctx context.Context, h topology.Host, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if err := h.Wrap(cmd); err != nil {
		return "", err
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
