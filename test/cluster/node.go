package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
)

// Node is a real `petrel node` process against a Server, confined like
// StartUp's node: its own cgroups, pins, DNS address and data directory.
type Node struct {
	t           testing.TB
	Name        string
	DataDir     string
	LBCgroup    string
	PinDir      string
	LocalDNS    netip.Addr
	MetricsPort int
	args        []string
	cmd         *exec.Cmd
	exited      chan struct{}
	logFile     *os.File
}

// StartNode starts a node for the server, joined with the server's join
// token (<data-dir>/node-token) as a machine joining a cluster would: it
// runs with its own node credentials, never the admin's. The test's
// cleanup stops it and removes its pods, pins, DNS address and cgroups.
func StartNode(t testing.TB, s *Server, extraArgs ...string) *Node {
	t.Helper()
	n := NewNode(t, s, s.NodeToken(t), extraArgs...)
	n.Start()
	return n
}

// NewNode prepares a node that joins s with token, without starting it.
func NewNode(t testing.TB, s *Server, token string, extraArgs ...string) *Node {
	t.Helper()
	bpftest.Require(t)
	root, _ := bpfobj.CgroupV2Mount()
	id := fmt.Sprintf("e2e-n-%d-%d", os.Getpid(), FreePort(t))
	n := &Node{t: t, Name: id, DataDir: t.TempDir(), LBCgroup: filepath.Join(root, "petrel-lb-"+id), PinDir: bpfobj.PinDir(id),
		LocalDNS: netip.AddrFrom4([4]byte{169, 254, 22, byte(1 + os.Getpid()%250)}), MetricsPort: FreePort(t)}
	cgroupRoot := filepath.Join(filepath.Base(n.LBCgroup), "pods")
	n.args = append([]string{"node", "--token", token, "--server", fmt.Sprintf("https://127.0.0.1:%d", s.Port),
		"--data-dir", n.DataDir, "--node-name", id,
		"--lb-cgroup", filepath.Base(n.LBCgroup), "--cgroup-root", cgroupRoot, "--local-dns-address", n.LocalDNS.String(),
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", n.MetricsPort), "--node-server-address", fmt.Sprintf(":%d", FreePort(t)),
		"--nodeport-interfaces", "none",
		// The machine's ports 80 and 443 stay out of tests too; a test that
		// wants the ingress gives it addresses (the later flag wins).
		"--ingress-http-address=", "--ingress-https-address="}, extraArgs...)
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			tailLog(t, filepath.Join(n.DataDir, "node.log"))
		}
		cleanupNode(t, n.DataDir, id, n.LBCgroup, cgroupRoot, n.LocalDNS, n.PinDir)
	})
	return n
}

// Kubeconfig is the node's own kubeconfig, written when it joined.
func (n *Node) Kubeconfig() string { return filepath.Join(n.DataDir, "node.kubeconfig") }

// RunToExit runs the node process until it exits (within timeout) and
// returns its output: for joins that must fail.
func (n *Node) RunToExit(timeout time.Duration) string {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(n.t), n.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		n.t.Fatalf("petrel node still running after %v:\n%s", timeout, out)
	}
	if err == nil {
		n.t.Fatalf("petrel node exited without error:\n%s", out)
	}
	return string(out)
}

// Start (re)starts the node process and waits for its /healthz.
func (n *Node) Start() {
	n.t.Helper()
	n.cmd = exec.Command(Binary(n.t), n.args...)
	lf, err := os.OpenFile(filepath.Join(n.DataDir, "node.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	n.logFile = lf
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func(cmd *exec.Cmd, ch chan struct{}) { _ = cmd.Wait(); close(ch) }(n.cmd, n.exited)
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.MetricsPort)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-n.exited:
			log, _ := os.ReadFile(lf.Name())
			n.t.Fatalf("petrel node exited during start:\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	log, _ := os.ReadFile(lf.Name())
	n.t.Fatalf("node not healthy after 90s:\n%s", log)
}

// Kill kills the node process as a crash would.
func (n *Node) Kill() { n.signal(syscall.SIGKILL) }

// Stop stops the node process in order.
func (n *Node) Stop() { n.signal(syscall.SIGTERM) }

func (n *Node) signal(sig syscall.Signal) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	n.logFile.Close()
	n.cmd = nil
}

// tailLog prints the end of a daemon's log into a failed test's output,
// warnings and errors first, so CI shows why.
func tailLog(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var problems []string
	for _, l := range lines {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			problems = append(problems, l)
		}
	}
	if len(problems) > 40 {
		problems = problems[len(problems)-40:]
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("%s, warnings and errors:\n%s\nlast lines:\n%s", path, strings.Join(problems, "\n"), strings.Join(lines, "\n"))
}
