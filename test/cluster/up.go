package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
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
	"github.com/petrel-project/petrel/dataplane/runtime"
)

// Up is a single-node cluster (`petrel up`) confined for a test: its socket
// load balancer serves only the test's cgroup, its DNS listens on a test
// address, and its pins live under a test node name.
type Up struct {
	*Server
	NodeName    string
	LBCgroup    string // full path under the cgroup v2 mount
	PinDir      string
	LocalDNS    netip.Addr
	MetricsPort int
	// ClusterCIDR is the pod range the cluster was started with: one of the
	// test process's own unless the test names one.
	ClusterCIDR string
}

// StartUp starts `petrel up` for a test; the test's cleanup stops it and
// removes its cgroups, pins and the DNS address. It skips where BPF cannot be
// loaded (not root).
func StartUp(t testing.TB, extraArgs ...string) *Up {
	t.Helper()
	bpftest.Require(t)
	root, _ := bpfobj.CgroupV2Mount()
	id := fmt.Sprintf("e2e-%d-%d", os.Getpid(), FreePort(t))
	u := &Up{NodeName: id, LBCgroup: filepath.Join(root, "petrel-lb-"+id), PinDir: bpfobj.PinDir(id),
		// Per test process, so that two runs on one machine do not collide.
		LocalDNS: netip.AddrFrom4([4]byte{169, 254, 21, byte(1 + os.Getpid()%250)}), MetricsPort: FreePort(t)}
	// A pod range per test cluster: single-node clusters of other test runs
	// (other worktrees' make test, a helper's e2e run) put their pods' /32
	// routes in the same root namespace, and with one shared range each run's
	// cleanup deleted the other's routes. 10.150-10.239 stays clear of the
	// service range (10.96.0.0/16) and of `petrel up`'s default 10.244.
	u.ClusterCIDR = fmt.Sprintf("10.%d.0.0/16", 150+(os.Getpid()+FreePort(t))%90)
	for i, a := range extraArgs {
		if a == "--cluster-cidr" && i+1 < len(extraArgs) {
			u.ClusterCIDR = extraArgs[i+1]
		} else if v, ok := strings.CutPrefix(a, "--cluster-cidr="); ok {
			u.ClusterCIDR = v
		}
	}
	// Pods go below the load-balanced cgroup, so that they reach Services.
	cgroupRoot := filepath.Join(filepath.Base(u.LBCgroup), "pods")
	args := append([]string{"--node-name", id, "--lb-cgroup", filepath.Base(u.LBCgroup), "--cgroup-root", cgroupRoot,
		"--local-dns-address", u.LocalDNS.String(), "--metrics-address", fmt.Sprintf("127.0.0.1:%d", u.MetricsPort),
		"--node-server-address", fmt.Sprintf(":%d", FreePort(t)),
		// The machine's own interface stays out of tests; a test that wants
		// NodePorts from outside names its interface (the later flag wins).
		"--nodeport-interfaces", "none",
		// The machine's ports 80 and 443 stay out of tests too; a test that
		// wants the ingress gives it addresses (the later flag wins).
		"--ingress-http-address=", "--ingress-https-address=", "--cluster-cidr", u.ClusterCIDR}, extraArgs...)
	s := &Server{t: t, DataDir: t.TempDir(), Port: FreePort(t), EtcdClient: FreePort(t), EtcdPeer: FreePort(t), ExtraArgs: args, Command: "up"}
	s.Kubeconfig = filepath.Join(s.DataDir, "admin.kubeconfig")
	u.Server = s
	// After the node stops (cleanups run last first): its pods, pins, DNS
	// address and cgroups go, as `petrel node --cleanup` removes them.
	t.Cleanup(func() {
		if t.Failed() {
			tailLog(t, filepath.Join(s.DataDir, "server.log"))
		}
		cleanupNode(t, s.DataDir, id, u.LBCgroup, cgroupRoot, u.LocalDNS, u.PinDir)
	})
	s.Start()
	t.Cleanup(s.Stop)
	u.WaitNode()
	return u
}

// cleanupNode runs `petrel node --cleanup` for a test's stopped node and
// checks that its cgroups and pins are gone.
func cleanupNode(t testing.TB, dataDir, name, lbCgroup, cgroupRoot string, dns netip.Addr, pinDir string) {
	out, err := exec.Command(Binary(t), "node", "--cleanup", "--data-dir", dataDir, "--node-name", name, "--cgroup-root", cgroupRoot,
		"--local-dns-address", dns.String()).CombinedOutput()
	if err != nil {
		t.Errorf("petrel node --cleanup: %v\n%s", err, out)
	}
	// runc made the pods' parents in every hierarchy, not only v2's.
	if err := runtime.RemoveCgroup(filepath.Base(lbCgroup)); err != nil {
		t.Errorf("remove cgroup %s: %v", lbCgroup, err)
	}
	if _, err := os.Stat(pinDir); err == nil {
		t.Errorf("pins left under %s", pinDir)
	}
}

// WaitNode waits for the node half to answer /healthz.
func (u *Up) WaitNode() {
	u.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", u.MetricsPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-u.exited:
			log, _ := os.ReadFile(filepath.Join(u.DataDir, "server.log"))
			u.t.Fatalf("petrel up exited during start:\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	log, _ := os.ReadFile(filepath.Join(u.DataDir, "server.log"))
	u.t.Fatalf("node not healthy after 60s:\n%s", log)
}

// InCgroup runs a command inside the load-balanced cgroup, as a pod or a
// host process on the node would, and returns its combined output.
func (u *Up) InCgroup(ctx context.Context, name string, args ...string) (string, error) {
	fd, err := syscall.Open(u.LBCgroup, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return "", fmt.Errorf("open cgroup: %w", err)
	}
	defer syscall.Close(fd)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Petrelctl runs petrelctl against this node's pins.
func (u *Up) Petrelctl(ctx context.Context, args ...string) (string, error) {
	args = append(args, "--node-name", u.NodeName)
	cmd := exec.CommandContext(ctx, Petrelctl(u.t), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+u.Kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// StartSimulatedNodes runs `petrel node --simulate n` against the server,
// with nodes named <prefix>-0 .. <prefix>-(n-1), and returns a function that
// kills it (as a crash would); the test's cleanup stops it in any case.
func (s *Server) StartSimulatedNodes(prefix string, n int, extraArgs ...string) (kill func()) {
	s.t.Helper()
	args := append([]string{"node", "--simulate", strconv.Itoa(n), "--node-name", prefix, "--kubeconfig", s.Kubeconfig}, extraArgs...)
	cmd := exec.Command(Binary(s.t), args...)
	lf, err := os.OpenFile(filepath.Join(s.DataDir, "simulated-nodes.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	stop := func(sig syscall.Signal) {
		once.Do(func() {
			_ = cmd.Process.Signal(sig)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			lf.Close()
		})
	}
	s.t.Cleanup(func() { stop(syscall.SIGTERM) })
	return func() { stop(syscall.SIGKILL) }
}
