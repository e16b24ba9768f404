package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	clientportforward "k8s.io/client-go/tools/portforward"
	clientremotecommand "k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/petrel-project/petrel/dataplane/runtime"
)

// v5Server serves serveV5 with run as the session, over TLS as the node
// server does.
func v5Server(t *testing.T, run session) *rest.Config {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opts, err := remotecommand.NewOptions(r)
		if err != nil {
			writeError(w, err)
			return
		}
		serveV5(w, r, opts, run)
	}))
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}

func execURL(t *testing.T, cfg *rest.Config, query string) string {
	t.Helper()
	return cfg.Host + "/exec/default/p/c?command=x&" + query
}

// TestV5ExecThroughClientGo drives serveV5 with client-go's WebSocket
// executor, the one kubectl uses first, which offers only v5.
func TestV5ExecThroughClientGo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The session echoes stdin until the client half-closes it, which only
	// v5 can say; a "fail" line ends it with exit code 3.
	cfg := v5Server(t, func(_ context.Context, in io.Reader, out, errw io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
		if resize != nil {
			return errors.New("a terminal size channel without a terminal")
		}
		b, err := io.ReadAll(in)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "got %q", b)
		fmt.Fprint(errw, "on stderr")
		if strings.Contains(string(b), "fail") {
			return utilexec.CodeExitError{Err: errors.New("exit 3"), Code: 3}
		}
		return nil
	})

	t.Run("stdin to its end, stdout, stderr", func(t *testing.T) {
		ex, err := clientremotecommand.NewWebSocketExecutor(cfg, "GET", execURL(t, cfg, "input=1&output=1&error=1"))
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		err = ex.StreamWithContext(ctx, clientremotecommand.StreamOptions{Stdin: strings.NewReader("hello\n"), Stdout: &out, Stderr: &errb})
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		if out.String() != `got "hello\n"` || errb.String() != "on stderr" {
			t.Fatalf("stdout %q, stderr %q", out.String(), errb.String())
		}
	})

	t.Run("a non-zero exit reaches the client as its code", func(t *testing.T) {
		ex, err := clientremotecommand.NewWebSocketExecutor(cfg, "GET", execURL(t, cfg, "input=1&output=1&error=1"))
		if err != nil {
			t.Fatal(err)
		}
		err = ex.StreamWithContext(ctx, clientremotecommand.StreamOptions{Stdin: strings.NewReader("fail\n"), Stdout: io.Discard, Stderr: io.Discard})
		var exit utilexec.ExitError
		if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
			t.Fatalf("want exit code 3, got %v", err)
		}
	})
}

// sizes is a terminal that reports one size and then ends.
type sizes struct{ sent bool }

func (s *sizes) Next() *clientremotecommand.TerminalSize {
	if s.sent {
		return nil
	}
	s.sent = true
	return &clientremotecommand.TerminalSize{Width: 132, Height: 43}
}

func TestV5TerminalSizesReachTheSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := v5Server(t, func(ctx context.Context, _ io.Reader, out, errw io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
		if errw != nil {
			return errors.New("a stderr stream with a terminal")
		}
		select {
		case s := <-resize:
			fmt.Fprintf(out, "%dx%d", s.Width, s.Height)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	ex, err := clientremotecommand.NewWebSocketExecutor(cfg, "GET", execURL(t, cfg, "output=1&tty=1"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ex.StreamWithContext(ctx, clientremotecommand.StreamOptions{Stdout: &out, Tty: true, TerminalSizeQueue: &sizes{}}); err != nil {
		t.Fatalf("exec: %v", err)
	}
	if out.String() != "132x43" {
		t.Fatalf("the session saw %q, want 132x43", out.String())
	}
}

// podAt is a kubelet with one pod, whose address is a loopback one.
type podAt struct{ ip string }

func (p podAt) PodIP(string, string) (string, types.UID, error) { return p.ip, "uid-1", nil }
func (podAt) RunningContainer(context.Context, string, string, string) (containerd.Container, types.UID, error) {
	return nil, "", errors.New("no containers here")
}
func (podAt) LogFile(context.Context, string, string, string, bool) (string, func() bool, error) {
	return "", nil, errors.New("no logs here")
}
func (podAt) Attachable(context.Context, string, string, string) (runtime.Attachable, error) {
	return runtime.Attachable{}, errors.New("no containers here")
}

// echoServer answers each line on a loopback port with the line in capitals.
func echoServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 512)
				n, _ := c.Read(b)
				_, _ = c.Write(bytes.ToUpper(b[:n]))
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPortForwardBothWays forwards a port of the pod through the node
// server's handler, once with SPDY tunnelled in a WebSocket (kubectl 1.31 and
// later) and once with plain SPDY, and checks each is counted as what it was.
func TestPortForwardBothWays(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := Handler(podAt{ip: "127.0.0.1"}, reg)
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	u, err := url.Parse(srv.URL + "/portForward/default/p")
	if err != nil {
		t.Fatal(err)
	}
	port := echoServer(t)

	tunnelled, err := clientportforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plain := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)

	for _, tc := range []struct {
		name     string
		dialer   httpstream.Dialer
		protocol string
	}{
		{"SPDY in a WebSocket", tunnelled, protocolSPDYTunnelled},
		{"SPDY", plain, protocolSPDY},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop, ready := make(chan struct{}), make(chan struct{})
			fw, err := clientportforward.NewOnAddresses(tc.dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- fw.ForwardPorts() }()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("forwarding ended before it was ready: %v", err)
			case <-time.After(20 * time.Second):
				close(stop)
				t.Fatal("forwarding not ready after 20 s")
			}
			defer func() {
				close(stop)
				if err := <-done; err != nil {
					t.Errorf("forwarding ended with %v", err)
				}
			}()
			ports, err := fw.GetPorts()
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "PING" {
				t.Fatalf("through the forward: %q, %v", b, err)
			}
			if n := sessionsCounted(t, reg, "portforward", tc.protocol); n != 1 {
				t.Fatalf("%v port-forward sessions counted as %s, want 1", n, tc.protocol)
			}
		})
	}
}

// sessionsCounted reads the sessions metric for one kind and protocol.
func sessionsCounted(t *testing.T, reg *prometheus.Registry, kind, protocol string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "petrel_node_stream_sessions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["protocol"] == protocol {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
