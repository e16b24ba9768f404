// Package stream is the node's server on :10250 behind the API server's
// pods/log, pods/exec, pods/attach and pods/portforward: container logs from
// the CRI-format files, exec into a running container, attach to its
// stdin and raw output (served by its logger), and port forwarding to the pod's address. Exec, attach and
// port-forward speak Kubernetes' streaming protocols (SPDY and WebSocket
// channels) through k8s.io/cri-streaming, as kubelets do, and also the two
// WebSocket protocols kubectl asks for first since 1.30 and 1.31
// (v5.channel.k8s.io, and SPDY tunnelled in a WebSocket for port-forward),
// which Kubernetes' API server would translate for a kubelet.
package stream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	rcconstants "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/petrel-project/petrel/dataplane/containerlog"
	"github.com/petrel-project/petrel/dataplane/runtime"
)

// Pods is what the server needs of the kubelet.
type Pods interface {
	RunningContainer(ctx context.Context, namespace, name, container string) (containerd.Container, types.UID, error)
	LogFile(ctx context.Context, namespace, name, container string, previous bool) (string, func() bool, error)
	PodIP(namespace, name string) (string, types.UID, error)
	Attachable(ctx context.Context, namespace, name, container string) (runtime.Attachable, error)
}

const (
	idleTimeout           = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

// Handler serves the node's streaming endpoints and counts their sessions
// in reg (nil: not counted).
func Handler(pods Pods, reg prometheus.Registerer) http.Handler {
	mux := http.NewServeMux()
	h := &handler{pods: pods, sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "petrel_node_stream_sessions_total",
		Help: "Exec and attach sessions, and port-forwarded connections, the node server served (their streams open), by kind and by the protocol they came over.",
	}, []string{"kind", "protocol"})}
	if reg != nil {
		reg.MustRegister(h.sessions)
	}
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", h.logs)
	mux.HandleFunc("/exec/{namespace}/{pod}/{container}", h.exec)
	mux.HandleFunc("/attach/{namespace}/{pod}/{container}", h.attach)
	mux.HandleFunc("/portForward/{namespace}/{pod}", h.portForward)
	// The node's own logs, as the kubelet serves them for nodes/proxy
	// (`kubectl get --raw /api/v1/nodes/<node>/proxy/logs/`); only the API
	// server's client certificate reaches this server.
	mux.Handle("GET /logs/", http.StripPrefix("/logs/", http.FileServer(http.Dir("/var/log"))))
	return mux
}

type handler struct {
	pods     Pods
	sessions *prometheus.CounterVec
}

// Protocol families of a streaming session, for the sessions metric.
const (
	protocolSPDY          = "SPDY/3.1"
	protocolWebSocketV5   = rcconstants.StreamProtocolV5Name
	protocolWebSocketOld  = "websocket v4 or older"
	protocolSPDYTunnelled = tunnelProtocol
)

// protocolOf names the family of protocol a streaming request asks for.
func protocolOf(r *http.Request) string {
	switch {
	case wsstream.IsWebSocketRequestWithStreamCloseProtocol(r):
		return protocolWebSocketV5
	case wsstream.IsWebSocketRequestWithTunnelingProtocol(r):
		return protocolSPDYTunnelled
	case wsstream.IsWebSocketRequest(r):
		return protocolWebSocketOld
	}
	return protocolSPDY
}

// writeError answers with a Kubernetes Status, which kubectl prints.
func writeError(w http.ResponseWriter, err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	s := st.Status()
	s.Kind, s.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(s.Code))
	_ = json.NewEncoder(w).Encode(s)
}

func (h *handler) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns, pod, ctr := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	previous, _ := strconv.ParseBool(q.Get("previous"))
	path, done, err := h.pods.LogFile(r.Context(), ns, pod, ctr, previous)
	if err != nil {
		writeError(w, err)
		return
	}
	o := containerlog.Options{TailLines: -1, Done: done}
	o.Follow, _ = strconv.ParseBool(q.Get("follow"))
	o.Timestamps, _ = strconv.ParseBool(q.Get("timestamps"))
	if v := q.Get("tailLines"); v != "" {
		if o.TailLines, err = strconv.ParseInt(v, 10, 64); err != nil || o.TailLines < 0 {
			writeError(w, apierrors.NewBadRequest("tailLines must be a non-negative integer"))
			return
		}
	}
	if v := q.Get("limitBytes"); v != "" {
		if o.LimitBytes, err = strconv.ParseInt(v, 10, 64); err != nil || o.LimitBytes < 1 {
			writeError(w, apierrors.NewBadRequest("limitBytes must be a positive integer"))
			return
		}
	}
	if v := q.Get("sinceSeconds"); v != "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs < 1 {
			writeError(w, apierrors.NewBadRequest("sinceSeconds must be a positive integer"))
			return
		}
		o.Since = time.Now().Add(-time.Duration(secs) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeError(w, apierrors.NewBadRequest("sinceTime must be an RFC 3339 time"))
			return
		}
		o.Since = t
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	_ = containerlog.Read(r.Context(), path, flushWriter{w}, o)
}

// flushWriter pushes each write to the client, for `logs -f`.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f flushWriter) Flush() {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}

// streamTarget is the running container and stream options of an exec or
// attach request; false when an error has been written.
func (h *handler) streamTarget(w http.ResponseWriter, r *http.Request) (containerd.Container, types.UID, *remotecommand.Options, bool) {
	ns, pod, ctr := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	c, uid, err := h.pods.RunningContainer(r.Context(), ns, pod, ctr)
	if err != nil {
		writeError(w, err)
		return nil, "", nil, false
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		writeError(w, apierrors.NewBadRequest(err.Error()))
		return nil, "", nil, false
	}
	return c, uid, opts, true
}

func (h *handler) exec(w http.ResponseWriter, r *http.Request) {
	pod, ctr := r.PathValue("pod"), r.PathValue("container")
	c, uid, opts, ok := h.streamTarget(w, r)
	if !ok {
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		writeError(w, apierrors.NewBadRequest("no command given"))
		return
	}
	proto := protocolOf(r)
	exec := executor{ctr: c, started: h.sessions.WithLabelValues("exec", proto).Inc}
	if proto == protocolWebSocketV5 {
		serveV5(w, r, opts, func(ctx context.Context, in io.Reader, out, errw io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
			return exec.ExecInContainer(ctx, pod, string(uid), ctr, cmd, in, out, errw, opts.TTY, resize, 0)
		})
		return
	}
	remotecommand.ServeExec(w, r, exec, pod, string(uid), ctr, cmd, opts, idleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// executor runs commands in one container; started is called once the
// client's streams are open.
type executor struct {
	ctr     containerd.Container
	started func()
}

func (e executor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	e.started()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	eio := runtime.ExecIO{TTY: tty}
	// Nil interfaces, not typed nils, for the streams that are not there.
	if in != nil {
		eio.Stdin = in
	}
	if out != nil {
		eio.Stdout = out
	}
	if errw != nil && !tty {
		eio.Stderr = errw
	}
	if resize != nil {
		sizes := make(chan [2]uint32)
		eio.Resize = sizes
		go func() {
			for s := range resize {
				select {
				case sizes <- [2]uint32{uint32(s.Width), uint32(s.Height)}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	code, err := runtime.Exec(ctx, e.ctr, cmd, eio)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (h *handler) attach(w http.ResponseWriter, r *http.Request) {
	ns, pod, ctr := r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container")
	a, err := h.pods.Attachable(r.Context(), ns, pod, ctr)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		writeError(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	if opts.Stdin && !a.Stdin {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("container %s in pod %s was not started with stdin: true; attach without -i to follow its output", ctr, pod)))
		return
	}
	proto := protocolOf(r)
	att := attacher{h: h, ns: ns, target: a, started: h.sessions.WithLabelValues("attach", proto).Inc}
	if proto == protocolWebSocketV5 {
		serveV5(w, r, opts, func(ctx context.Context, in io.Reader, out, errw io.WriteCloser, resize <-chan remotecommand.TerminalSize) error {
			return att.AttachContainer(ctx, pod, a.PodUID, ctr, in, out, errw, opts.TTY, resize)
		})
		return
	}
	remotecommand.ServeAttach(w, r, att, pod, a.PodUID, ctr, opts, idleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// attacher joins the container's stdin and its output from now on.
type attacher struct {
	h       *handler
	ns      string
	target  runtime.Attachable
	started func() // once the client's streams are open
}

func (a attacher) AttachContainer(ctx context.Context, pod, _, container string, in io.Reader, out, errw io.WriteCloser, _ bool, resize <-chan remotecommand.TerminalSize) error {
	a.started()
	var stdout, stderr io.Writer
	if out != nil {
		stdout = out
	}
	if errw != nil {
		stderr = errw
	}
	copyOut, err := containerlog.Attach(ctx, runtime.AttachSocket(a.target.IODir), stdout, stderr)
	if errors.Is(err, containerlog.ErrNoAttachSocket) && in == nil {
		// A container started before its logger had a socket: its log.
		return a.followLog(ctx, pod, container, stdout)
	}
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", container, err)
	}
	if in != nil {
		stdin, err := runtime.OpenStdin(a.target.IODir)
		if err != nil {
			return fmt.Errorf("attach to the stdin of container %s: %w", container, err)
		}
		go func() {
			_, _ = io.Copy(stdin, in)
			stdin.Close()
			if a.target.StdinOnce {
				// Kubernetes' stdinOnce: the first attach to end closes it.
				if err := runtime.CloseStdin(context.WithoutCancel(ctx), a.target.Container); err != nil {
					slog.Warn("stream: close stdin", "pod", a.ns+"/"+pod, "container", container, "err", err)
				}
			}
		}()
	}
	if resize != nil && a.target.TTY {
		go func() {
			for s := range resize {
				if err := runtime.ResizeTerminal(ctx, a.target.Container, uint32(s.Width), uint32(s.Height)); err != nil && ctx.Err() == nil {
					slog.Debug("stream: resize terminal", "container", container, "err", err)
				}
			}
		}()
	}
	return copyOut()
}

func (a attacher) followLog(ctx context.Context, pod, container string, out io.Writer) error {
	path, done, err := a.h.pods.LogFile(ctx, a.ns, pod, container, false)
	if err != nil {
		return err
	}
	if out == nil {
		<-ctx.Done()
		return nil
	}
	return containerlog.Read(ctx, path, out, containerlog.Options{TailLines: 0, Follow: true, Done: done})
}

func (h *handler) portForward(w http.ResponseWriter, r *http.Request) {
	ns, pod := r.PathValue("namespace"), r.PathValue("pod")
	ip, uid, err := h.pods.PodIP(ns, pod)
	if err != nil {
		writeError(w, err)
		return
	}
	proto := protocolOf(r)
	serve := func(w http.ResponseWriter, r *http.Request) {
		opts, err := portforward.NewV4Options(r)
		if err != nil {
			writeError(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		portforward.ServePortForward(w, r, forwarder{ip: ip, started: h.sessions.WithLabelValues("portforward", proto).Inc}, pod, string(uid), opts, idleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
	}
	if proto == protocolSPDYTunnelled {
		servePortForwardTunnel(w, r, serve)
		return
	}
	serve(w, r)
}

// forwarder connects to the pod's address from the node, which routes to
// every local pod; started is called for each connection it forwards.
type forwarder struct {
	ip      string
	started func()
}

func (f forwarder) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	f.started()
	defer stream.Close()
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(f.ip, strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("connect to port %d of the pod: %w", port, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// Serve listens on addr with TLS: a certificate made for the purpose, and
// only clients with a certificate from the cluster's CA (the API server).
func Serve(ctx context.Context, addr string, clientCAs *x509.CertPool, h http.Handler) (int, error) {
	cert, err := selfSigned()
	if err != nil {
		return 0, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("node server on %s (pick another with --node-server-address): %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs,
			MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}, VerifyConnection: onlyMasters}}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn("stream: node server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// onlyMasters lets in only clients whose certificate puts them in
// system:masters (the API server's node client certificate, admins): the
// cluster's CA also signs every node's client certificate, and one node
// must not exec into another's pods.
func onlyMasters(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("a client certificate is required")
	}
	for _, o := range cs.PeerCertificates[0].Subject.Organization {
		if o == "system:masters" {
			return nil
		}
	}
	return fmt.Errorf("%q may not use the node server: only the API server may", cs.PeerCertificates[0].Subject.CommonName)
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	// No names: the API server does not verify node certificates (as
	// Kubernetes' without --kubelet-certificate-authority).
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "petrel-node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
