package stream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	gwebsocket "github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	pfconstants "k8s.io/apimachinery/pkg/util/portforward"
	rcconstants "k8s.io/apimachinery/pkg/util/remotecommand"
	clientportforward "k8s.io/client-go/tools/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// The channels of Kubernetes' WebSocket remote command protocols, by index.
const (
	stdinChannel = iota
	stdoutChannel
	stderrChannel
	errorChannel
	resizeChannel
)

// session is one exec or attach once its streams are open: the streams
// the client asked for (nil interfaces for the others) and the terminal
// sizes it sends (nil without a terminal).
type session func(ctx context.Context, in io.Reader, out, errw io.WriteCloser, resize <-chan remotecommand.TerminalSize) error

// serveV5 runs an exec or attach over v5.channel.k8s.io, the WebSocket
// protocol kubectl 1.30 and later ask for first. The kubelet's streaming
// library speaks only the older WebSocket versions, and Kubernetes' API
// server translates v5 to SPDY before it reaches a kubelet; Petrel's API
// server passes the upgrade through, so the node speaks v5 itself. What v5
// adds over v4 is the client's half-close of stdin (`kubectl exec -i` of a
// command that reads to the end), which wsstream handles for this protocol.
func serveV5(w http.ResponseWriter, r *http.Request, opts *remotecommand.Options, run session) {
	channels := []wsstream.ChannelType{
		stdinChannel:  wsstream.IgnoreChannel,
		stdoutChannel: wsstream.IgnoreChannel,
		stderrChannel: wsstream.IgnoreChannel,
		errorChannel:  wsstream.WriteChannel,
		resizeChannel: wsstream.ReadChannel,
	}
	if opts.Stdin {
		channels[stdinChannel] = wsstream.ReadChannel
	}
	if opts.Stdout {
		channels[stdoutChannel] = wsstream.WriteChannel
	}
	if opts.Stderr {
		channels[stderrChannel] = wsstream.WriteChannel
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		rcconstants.StreamProtocolV5Name: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(idleTimeout)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		slog.Warn("stream: open WebSocket", "path", r.URL.Path, "err", err)
		return
	}
	defer conn.Close()
	// An empty frame on the first stream the client reads tells it the
	// session is up, as the kubelet's server does.
	switch {
	case opts.Stdout:
		_, _ = streams[stdoutChannel].Write(nil)
	case opts.Stderr:
		_, _ = streams[stderrChannel].Write(nil)
	default:
		_, _ = streams[errorChannel].Write(nil)
	}

	var in io.Reader
	var out, errw io.WriteCloser
	if opts.Stdin {
		in = streams[stdinChannel]
	}
	if opts.Stdout {
		out = streams[stdoutChannel]
	}
	if opts.Stderr {
		errw = streams[stderrChannel]
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var resize <-chan remotecommand.TerminalSize
	if opts.TTY {
		resize = terminalSizes(ctx, streams[resizeChannel])
	}
	status := sessionStatus(run(ctx, in, out, errw, resize))
	if b, err := json.Marshal(status); err == nil {
		_, _ = streams[errorChannel].Write(b)
	}
}

// terminalSizes decodes the JSON sizes the client sends while the session
// lasts.
func terminalSizes(ctx context.Context, r io.Reader) <-chan remotecommand.TerminalSize {
	sizes := make(chan remotecommand.TerminalSize)
	go func() {
		defer close(sizes)
		dec := json.NewDecoder(r)
		for {
			var s remotecommand.TerminalSize
			if err := dec.Decode(&s); err != nil {
				return
			}
			select {
			case sizes <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	return sizes
}

// sessionStatus is the Status a session ends with on the error channel:
// client-go turns NonZeroExitCode with an ExitCode cause into the exit
// code kubectl exits with.
func sessionStatus(err error) *metav1.Status {
	var exit utilexec.ExitError
	switch {
	case err == nil:
		return &metav1.Status{Status: metav1.StatusSuccess}
	case errors.As(err, &exit) && exit.Exited():
		return &metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  rcconstants.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{
				Type: rcconstants.ExitCodeCauseType, Message: fmt.Sprint(exit.ExitStatus()),
			}}},
		}
	default:
		st := apierrors.NewInternalError(err).ErrStatus
		return &st
	}
}

// tunnelProtocol is the one WebSocket subprotocol that carries port
// forwarding: SPDY's bytes, as kubectl 1.31 and later send them.
const tunnelProtocol = pfconstants.WebsocketsSPDYTunnelingPortForwardV1

// servePortForwardTunnel accepts port forwarding whose SPDY connection is
// tunnelled inside a WebSocket, as Kubernetes' API server does, and hands
// that connection to the SPDY port-forward server as though it had been
// upgraded from HTTP.
func servePortForwardTunnel(w http.ResponseWriter, r *http.Request, serveSPDY http.HandlerFunc) {
	upgrader := gwebsocket.Upgrader{
		Subprotocols: []string{tunnelProtocol},
		// Browsers' cross-origin rule does not apply: only a client with a
		// certificate from the cluster's CA (the API server) gets here.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with the reason
	}
	tunnel := clientportforward.NewTunnelingConnection("node", ws)
	defer tunnel.Close()
	if ws.Subprotocol() != tunnelProtocol {
		slog.Warn("stream: port-forward WebSocket without the SPDY tunnel protocol", "path", r.URL.Path, "offered", r.Header.Values("Sec-WebSocket-Protocol"))
		return
	}
	inner := r.Clone(r.Context())
	for h := range inner.Header {
		if strings.HasPrefix(http.CanonicalHeaderKey(h), "Sec-Websocket-") {
			inner.Header.Del(h)
		}
	}
	inner.Header.Set("Connection", "Upgrade")
	inner.Header.Set("Upgrade", "SPDY/3.1")
	inner.Header.Set("X-Stream-Protocol-Version", pfconstants.PortForwardV1Name)
	rw := &tunnelResponse{conn: tunnel, header: http.Header{}}
	serveSPDY(rw, inner)
	if rw.status != http.StatusSwitchingProtocols {
		slog.Warn("stream: port-forward through a WebSocket tunnel refused", "path", r.URL.Path, "status", rw.status, "body", rw.body.String())
	}
}

// tunnelResponse is the ResponseWriter the SPDY server upgrades through: its
// 101 answer was already given by the WebSocket handshake, so headers and
// body are kept back (for the log) and the hijacked connection is the tunnel.
type tunnelResponse struct {
	conn   net.Conn
	header http.Header
	status int
	body   bytes.Buffer
}

func (t *tunnelResponse) Header() http.Header         { return t.header }
func (t *tunnelResponse) WriteHeader(status int)      { t.status = status }
func (t *tunnelResponse) Write(p []byte) (int, error) { return t.body.Write(p) }

// Hijack gives the SPDY server the tunnel.
func (t *tunnelResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}
