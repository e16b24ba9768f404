package cluster

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/petrel-project/petrel/controlplane/pki"
)

// EtcdBinary is Debian's etcd (package etcd-server).
const EtcdBinary = "/usr/bin/etcd"

// EtcdCluster is an external etcd cluster for tests: members of Debian's
// etcd on 127.0.0.1, TLS with client certificates on the client and peer
// ports, from a CA of the test's.
type EtcdCluster struct {
	t       testing.TB
	Members []*EtcdMember
	// CAFile, CertFile and KeyFile are what a server gives as
	// --etcd-cafile, --etcd-certfile and --etcd-keyfile.
	CAFile, CertFile, KeyFile string
}

// EtcdMember is one etcd process.
type EtcdMember struct {
	Name      string
	ClientURL string
	args      []string
	log       string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// StartEtcdCluster starts n members and waits until the cluster answers;
// the test's cleanup kills them by PID. It skips without Debian's etcd.
func StartEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	if _, err := os.Stat(EtcdBinary); err != nil {
		t.Skipf("%s is not installed (apt-get install etcd-server)", EtcdBinary)
	}
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	ca, err := pki.LoadOrCreateNamedCA(pkiDir, "petrel-test-etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	e := &EtcdCluster{t: t, CAFile: filepath.Join(pkiDir, "ca.crt")}
	if e.CertFile, e.KeyFile, err = ca.EnsurePairFor(pkiDir, "client", "petrel-apiserver", nil, nil, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	var initial []string
	peers := make([]string, n)
	for i := range n {
		peers[i] = fmt.Sprintf("https://127.0.0.1:%d", FreePort(t))
		initial = append(initial, fmt.Sprintf("e%d=%s", i, peers[i]))
	}
	for i := range n {
		name := fmt.Sprintf("e%d", i)
		cert, key, err := ca.EnsurePairFor(pkiDir, name, "etcd-"+name, nil, []string{"127.0.0.1", "localhost"}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
		if err != nil {
			t.Fatal(err)
		}
		m := &EtcdMember{Name: name, ClientURL: fmt.Sprintf("https://127.0.0.1:%d", FreePort(t)), log: filepath.Join(dir, name+".log")}
		m.args = []string{"--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "petrel-test",
			"--cert-file", cert, "--key-file", key, "--trusted-ca-file", e.CAFile, "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", e.CAFile, "--peer-client-cert-auth",
			"--log-level", "warn", "--logger", "zap"}
		e.Members = append(e.Members, m)
		t.Cleanup(m.Kill)
		m.start(t)
	}
	cli := e.Client()
	defer cli.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Put(ctx, "/test/health", "ok")
		cancel()
		if err == nil {
			return e
		}
		if time.Now().After(deadline) {
			for _, m := range e.Members {
				log, _ := os.ReadFile(m.log)
				t.Logf("%s:\n%s", m.Name, log)
			}
			t.Fatalf("the etcd cluster did not take a write in 60 s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *EtcdMember) start(t testing.TB) {
	t.Helper()
	lf, err := os.OpenFile(m.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	m.cmd = exec.Command(EtcdBinary, m.args...)
	m.cmd.Stdout, m.cmd.Stderr = lf, lf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.exited = make(chan struct{})
	go func(cmd *exec.Cmd, ch chan struct{}) { _ = cmd.Wait(); close(ch) }(m.cmd, m.exited)
}

// Kill kills the member (kill -9) and waits for it to go.
func (m *EtcdMember) Kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

// Endpoints is the members' client URLs, comma-separated.
func (e *EtcdCluster) Endpoints() string {
	var urls []string
	for _, m := range e.Members {
		urls = append(urls, m.ClientURL)
	}
	return strings.Join(urls, ",")
}

// ServerArgs are a petrel server's flags for this cluster.
func (e *EtcdCluster) ServerArgs() []string {
	return []string{"--etcd-endpoints", e.Endpoints(), "--etcd-cafile", e.CAFile, "--etcd-certfile", e.CertFile, "--etcd-keyfile", e.KeyFile}
}

// Client is a client of the cluster with the client certificate.
func (e *EtcdCluster) Client() *clientv3.Client {
	e.t.Helper()
	info := transport.TLSInfo{CertFile: e.CertFile, KeyFile: e.KeyFile, TrustedCAFile: e.CAFile}
	tlsConfig, err := info.ClientConfig()
	if err != nil {
		e.t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(e.Endpoints(), ","), TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatal(err)
	}
	return cli
}
