package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Server is a `petrel server` or `petrel up` the bench started on a fresh
// data dir, with its embedded etcd; suites measure the process, read what
// it wrote, and reach it and its etcd from the fields.
type Server struct {
	Cmd        *exec.Cmd
	Dir        string // the data dir: log, PKI, kubeconfig, etcd
	EtcdURL    string
	Kubeconfig string // admin.kubeconfig in Dir
}

// FreePorts returns n distinct loopback ports nobody listens on: all n
// listeners stay open until every port is picked, or the kernel could hand
// one closed port out twice (a server's API and etcd ports alike).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// StartServer starts `petrel server` with extraArgs after the bench's
// defaults; see StartPetrel.
func StartServer(ctx context.Context, petrel string, extraArgs ...string) (*Server, error) {
	return StartPetrel(ctx, petrel, "server", extraArgs...)
}

// StartPetrel starts `petrel server` or `petrel up` on a fresh data dir
// and waits until the API is ready.
func StartPetrel(ctx context.Context, petrel, command string, extraArgs ...string) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "petrel-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir) // a server that never started leaves nothing
		}
	}()
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	if err := DropPageCache(petrel); err != nil {
		return nil, fmt.Errorf("the petrel binary (build it with make build, or pass --petrel): %w", err)
	}
	sp := &Server{Dir: dir, EtcdURL: fmt.Sprintf("https://127.0.0.1:%d", ports[1]), Kubeconfig: filepath.Join(dir, "admin.kubeconfig")}
	args := append([]string{command, "--data-dir", dir, "--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(ports[0]),
		"--etcd-client-url", sp.EtcdURL, "--etcd-peer-url", fmt.Sprintf("https://127.0.0.1:%d", ports[2])}, extraArgs...)
	sp.Cmd = exec.CommandContext(ctx, petrel, args...)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	sp.Cmd.Stdout, sp.Cmd.Stderr = logf, logf
	sp.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sp.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", petrel, err)
	}
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/readyz", ports[0]))
		if err == nil {
			resp.Body.Close()
			if _, serr := os.Stat(sp.Kubeconfig); resp.StatusCode == 200 && serr == nil {
				return sp, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	sp.Stop()
	return nil, fmt.Errorf("petrel server did not become ready; see %s", filepath.Join(dir, "server.log"))
}

// Stop stops the process and removes its data dir.
func (sp *Server) Stop() {
	sp.Terminate()
	_ = os.RemoveAll(sp.Dir)
}

// Terminate stops the process and keeps its data dir (a node's pods are
// found there by petrel node --cleanup).
func (sp *Server) Terminate() {
	if sp.Cmd.Process != nil {
		_ = sp.Cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = sp.Cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = sp.Cmd.Process.Kill()
		}
	}
}

// Client returns an unthrottled admin client of the server.
func (sp *Server) Client() (*rest.Config, kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", sp.Kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	cfg.QPS, cfg.Burst = 1e6, 1e6
	cs, err := kubernetes.NewForConfig(cfg)
	return cfg, cs, err
}

// RunFor runs work from n goroutines for d and returns completed operations per second.
func RunFor(n int, d time.Duration, work func(worker, i int) error) (float64, error) {
	var ops atomic.Int64
	var errOnce sync.Once
	var firstErr error
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if err := work(w, i); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				ops.Add(1)
			}
		}(w)
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(ops.Load()) / time.Since(start).Seconds(), nil
}

// RunEach calls fn for i in [0, n) from the given number of workers and
// returns the first error.
func RunEach(workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	_, err := RunFor(workers, time.Hour, func(_, _ int) error {
		i := int(next.Add(1)) - 1
		if i >= n {
			return errDone
		}
		return fn(i)
	})
	if err == errDone {
		return nil
	}
	return err
}

// errDone ends RunEach's workers once every i is taken.
var errDone = fmt.Errorf("done")
