package containerlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// The logger serves a container's raw output on a unix socket beside the
// log, so that `kubectl attach` sees a shell's prompt and echo as they come
// rather than line by line from the log file. Each message on the socket
// is a frame: one byte naming the stream, a big-endian uint32 length, the
// bytes. The first frame, with no bytes, says the client is registered, so
// that nothing written after Attach returns is missed.
const (
	frameReady  byte = 0
	frameStdout byte = 1
	frameStderr byte = 2
	// attachQueue frames wait for a slow client before it is dropped:
	// the container's output never waits for an attached client.
	attachQueue = 256
)

// hub hands every chunk of output to the attached clients.
type hub struct {
	mu      sync.Mutex
	clients map[*attachClient]struct{}
	closed  bool
	wg      sync.WaitGroup
}

type attachClient struct {
	conn   net.Conn
	frames chan []byte
}

func newHub() *hub { return &hub{clients: map[*attachClient]struct{}{}} }

func frame(kind byte, p []byte) []byte {
	f := make([]byte, 5+len(p))
	f[0] = kind
	binary.BigEndian.PutUint32(f[1:5], uint32(len(p)))
	copy(f[5:], p)
	return f
}

// serve accepts clients until ln is closed.
func (h *hub) serve(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c := &attachClient{conn: conn, frames: make(chan []byte, attachQueue)}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			_ = conn.Close()
			return
		}
		h.clients[c] = struct{}{}
		c.frames <- frame(frameReady, nil)
		h.wg.Add(1)
		h.mu.Unlock()
		go h.send(c)
	}
}

func (h *hub) send(c *attachClient) {
	defer h.wg.Done()
	defer c.conn.Close()
	for f := range c.frames {
		if _, err := c.conn.Write(f); err != nil {
			h.drop(c)
			for range c.frames {
			}
			return
		}
	}
}

// drop forgets a client; its sender ends once its queue is closed.
func (h *hub) drop(c *attachClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.frames)
	}
}

func (h *hub) write(kind byte, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) == 0 {
		return
	}
	f := frame(kind, p)
	for c := range h.clients {
		select {
		case c.frames <- f:
		default:
			delete(h.clients, c)
			close(c.frames)
		}
	}
}

// close ends every client once what is queued for it is sent.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	for c := range h.clients {
		delete(h.clients, c)
		close(c.frames)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// streamTee feeds a stream's raw bytes to the hub as they are read.
type streamTee struct {
	h    *hub
	kind byte
}

func (t streamTee) Write(p []byte) (int, error) {
	t.h.write(t.kind, p)
	return len(p), nil
}

// shortPath opens path's directory and names path through the descriptor,
// so that a socket's address fits its 108 bytes whatever the path.
func shortPath(path string) (string, func(), error) {
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("attach socket directory: %w", err)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir, filepath.Base(path)), func() { unix.Close(dir) }, nil
}

func listenAttach(path string) (net.Listener, error) {
	addr, done, err := shortPath(path)
	if err != nil {
		return nil, err
	}
	defer done()
	_ = os.Remove(path)
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("attach socket: %w", err)
	}
	// The listener would unlink its own (descriptor-relative) name.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return ln, nil
}

func dialAttach(ctx context.Context, path string) (net.Conn, error) {
	addr, done, err := shortPath(path)
	if err != nil {
		return nil, err
	}
	defer done()
	var d net.Dialer
	return d.DialContext(ctx, "unix", addr)
}

// ErrNoAttachSocket says the container's logger serves no attach socket
// (it was started before Petrel had one, or it has ended).
var ErrNoAttachSocket = errors.New("the container's logger has no attach socket")

// Attach connects to the attach socket at path and returns once the
// logger has registered the client: output written from then on reaches
// stdout and stderr (which may be the same writer, or nil to discard). The
// returned function copies until the container's output ends or ctx does.
func Attach(ctx context.Context, path string, stdout, stderr io.Writer) (func() error, error) {
	conn, err := dialAttach(ctx, path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, ErrNoAttachSocket
		}
		return nil, err
	}
	br := bufio.NewReader(conn)
	kind, payload, err := readFrame(br, nil)
	if err != nil || kind != frameReady || len(payload) != 0 {
		conn.Close()
		return nil, fmt.Errorf("attach socket handshake: %v", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return func() error {
		defer stop()
		defer conn.Close()
		var buf []byte
		for {
			kind, p, err := readFrame(br, buf)
			if err != nil {
				if errors.Is(err, io.EOF) || ctx.Err() != nil {
					return nil
				}
				return err
			}
			buf = p[:0]
			w := stdout
			if kind == frameStderr {
				w = stderr
			}
			if w == nil {
				continue
			}
			if _, err := w.Write(p); err != nil {
				return err
			}
		}
	}, nil
}

func readFrame(br *bufio.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(br, buf); err != nil {
		return 0, nil, err
	}
	return hdr[0], buf, nil
}
