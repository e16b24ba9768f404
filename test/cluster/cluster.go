// Package cluster starts real Petrel processes for tests: the petrel binary as a
// child process with its own data dir and ports, and tears them down by PID.
package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

var (
	ctlOnce  sync.Once
	ctlPath  string
	ctlError error
)

// Petrelctl returns the petrelctl binary: the one next to $PETREL_BIN when
// there is one (make test builds both), else one built once for this process.
func Petrelctl(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PETREL_BIN"); p != "" {
		if c := filepath.Join(filepath.Dir(p), "petrelctl"); fileExists(c) {
			return c
		}
	}
	ctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "petrelctl-bin-")
		if err != nil {
			ctlError = err
			return
		}
		ctlPath = filepath.Join(dir, "petrelctl")
		cmd := exec.Command("go", "build", "-tags=fieldsv1string", "-o", ctlPath, "./cmd/petrelctl")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			ctlError = fmt.Errorf("go build petrelctl: %v\n%s", err, out)
		}
	})
	if ctlError != nil {
		t.Fatal(ctlError)
	}
	return ctlPath
}

// RemoveBuilt deletes the binaries built for this test process (when
// $PETREL_BIN was not given); a package's TestMain calls it after m.Run.
func RemoveBuilt() {
	for _, p := range []string{binPath, ctlPath} {
		if p != "" && p != os.Getenv("PETREL_BIN") && strings.Contains(filepath.Base(filepath.Dir(p)), "-bin-") {
			_ = os.RemoveAll(filepath.Dir(p))
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Binary returns the petrel binary: $PETREL_BIN when set (make test builds it),
// else one built once for this test process.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PETREL_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "petrel-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "petrel")
		// The node's helpers go beside it, as make build puts them.
		cmd := exec.Command("go", "build", "-tags=fieldsv1string", "-o", dir+"/", "./cmd/petrel", "./cmd/petrel-cni", "./cmd/petrel-logger", "./cmd/petrel-kubectl")
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreePort returns a TCP port nobody listens on right now.
//
// The kernel may hand a port that was just closed out again, so two calls
// in a row (a server's API and etcd ports) could get the same one: a port
// is never returned twice in one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("no free port that was not handed out before")
	return 0
}

// handedOut are the ports FreePort returned.
var handedOut = struct {
	mu    sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Server is a running `petrel server` child process.
type Server struct {
	t       testing.TB
	DataDir string
	// Host is the address the server binds and is reached at (default
	// 127.0.0.1).
	Host       string
	Port       int
	EtcdClient int
	EtcdPeer   int
	ExtraArgs  []string
	Kubeconfig string
	// Command is "server" (the default) or "up" (server and node in one).
	Command string
	// Wrapper, when set, runs the binary under it (for example prlimit with
	// its arguments, to start the server with fewer file descriptors).
	Wrapper []string
	cmd     *exec.Cmd
	logFile *os.File
	exited  chan struct{}
}

// StartServer starts `petrel server` with a fresh data dir and free ports; the
// test's cleanup stops it.
func StartServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s := NewServer(t, extraArgs...)
	s.Start()
	return s
}

// NewServer is StartServer without the start, for a test that sets fields
// (Wrapper, Command) first; the test's cleanup stops it.
func NewServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s := &Server{t: t, DataDir: t.TempDir(), Port: FreePort(t), EtcdClient: FreePort(t), EtcdPeer: FreePort(t), ExtraArgs: extraArgs}
	s.Kubeconfig = filepath.Join(s.DataDir, "admin.kubeconfig")
	t.Cleanup(s.Stop)
	return s
}

// Pid is the server process's ID, or 0 when it is not running.
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Alive reports whether the process is still running.
func (s *Server) Alive() bool {
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Start (re)starts the process on the same data dir and ports and waits until
// it is ready.
func (s *Server) Start() {
	s.t.Helper()
	command := s.Command
	if command == "" {
		command = "server"
	}
	args := append([]string{command, "--data-dir", s.DataDir, "--bind-address", s.host(), "--secure-port", strconv.Itoa(s.Port),
		"--etcd-client-url", fmt.Sprintf("https://127.0.0.1:%d", s.EtcdClient), "--etcd-peer-url", fmt.Sprintf("https://127.0.0.1:%d", s.EtcdPeer)}, s.ExtraArgs...)
	argv := append(append([]string{}, s.Wrapper...), Binary(s.t))
	s.cmd = exec.Command(argv[0], append(argv[1:], args...)...)
	lf, err := os.OpenFile(filepath.Join(s.DataDir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.logFile = lf
	s.cmd.Stdout, s.cmd.Stderr = lf, lf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, ch chan struct{}) { _ = cmd.Wait(); close(ch) }(s.cmd, s.exited)
	s.WaitReady(60 * time.Second)
}

// WaitReady waits for /readyz and for the bootstrap objects.
func (s *Server) WaitReady(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.DataDir, "server.log"))
			s.t.Fatalf("petrel server exited during start:\n%s", log)
		default:
		}
		resp, err := client.Get(s.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if _, err := os.Stat(s.Kubeconfig); err == nil {
					cs := s.Clientset()
					if _, err := cs.CoreV1().Services("default").Get(context.Background(), "kubernetes", metav1.GetOptions{}); err == nil {
						return
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(s.DataDir, "server.log"))
	s.t.Fatalf("petrel server not ready after %s:\n%s", timeout, log)
}

// Kill sends SIGKILL and waits for the process to go.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.logFile.Close()
	s.cmd = nil
}

// Stop ends the process gracefully (SIGTERM, then SIGKILL).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
	}
	s.logFile.Close()
	s.cmd = nil
}

// NodeToken is the server's join token (<data-dir>/node-token).
func (s *Server) NodeToken(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.DataDir, "node-token"))
	if err != nil {
		t.Fatalf("the server's join token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// ServerToken is the token other servers join this one's cluster with
// (<data-dir>/server-token).
func (s *Server) ServerToken(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.DataDir, "server-token"))
	if err != nil {
		t.Fatalf("the server's server token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// URL is the server's API address.
func (s *Server) URL() string { return "https://" + net.JoinHostPort(s.host(), strconv.Itoa(s.Port)) }

func (s *Server) host() string {
	if s.Host == "" {
		return "127.0.0.1"
	}
	return s.Host
}

// JoinArgs are the flags of a server that joins this one's cluster.
func (s *Server) JoinArgs(t testing.TB) []string {
	return []string{"--join", s.URL(), "--token", s.ServerToken(t)}
}

// RESTConfig is a client config with the admin certificate.
func (s *Server) RESTConfig() *rest.Config {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		s.t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	return cfg
}

// Clientset is a client-go clientset for the server.
func (s *Server) Clientset() kubernetes.Interface {
	cs, err := kubernetes.NewForConfig(s.RESTConfig())
	if err != nil {
		s.t.Fatal(err)
	}
	return cs
}

// Kubectl runs /usr/bin/kubectl against the server with a private cache dir.
func (s *Server) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	return s.KubectlEnv(ctx, nil, stdin, args...)
}

// KubectlEnv is Kubectl with extra environment variables (EDITOR, say).
func (s *Server) KubectlEnv(ctx context.Context, env []string, stdin string, args ...string) (string, error) {
	all := append([]string{"--kubeconfig", s.Kubeconfig, "--cache-dir", filepath.Join(s.DataDir, "kubectl-cache")}, args...)
	cmd := exec.CommandContext(ctx, KubectlPath(), all...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+s.Kubeconfig), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// KubectlPath is the kubectl the tests run: $KUBECTL, else /usr/bin/kubectl.
func KubectlPath() string {
	if p := os.Getenv("KUBECTL"); p != "" {
		return p
	}
	return "/usr/bin/kubectl"
}
