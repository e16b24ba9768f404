// Package connlimit keeps a server's connections within what the process can
// hold. A flood of connections that never speak (or never finish TLS) would
// otherwise take every file descriptor, and with them etcd's and the server's
// own work: a listener from New holds at most Max connections, makes room by
// closing the oldest that have not started a request, and refuses (closes at
// once) what it cannot place. It recovers by itself when the flood ends.
//
// A connection that has sent nothing is the flood's; one that has spoken (a
// TLS handshake under way, or a keep-alive connection between requests) is a
// client's, and closing it races the client's next write (a POST on a
// reused connection fails with "broken pipe" and is not retried). So the
// silent ones go first, after EvictAfter; the ones that spoke only when no
// silent one can, and after EvictSpokenAfter.
package connlimit

import (
	"container/list"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// EvictAfter is how long a connection may sit without starting a request
// before a newcomer may take its place when the listener is full. A client
// that is really there finishes its handshake within milliseconds.
const EvictAfter = time.Second

// EvictSpokenAfter is how long a connection that has spoken may wait (in its
// handshake, or idle between requests) before it may be closed for room.
const EvictSpokenAfter = 5 * time.Second

// RaiseFileLimit sets the process's soft limit on open files to its hard limit
// and returns the limit in force.
func RaiseFileLimit() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading the open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			return lim.Cur, fmt.Errorf("raising the open-file limit from %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = want
	}
	return lim.Cur, nil
}

// Budget is how many connections a listener may hold when share (0 < share
// ≤ 1) of the open-file limit is given to it, after a reserve (a fifth of the
// limit, at least 512 descriptors) kept for etcd, files and outgoing
// connections. It is never below 16.
func Budget(fileLimit uint64, share float64) int {
	reserve := fileLimit / 5
	if reserve < 512 {
		reserve = 512
	}
	n := 16
	if fileLimit > reserve {
		n = max(n, int(float64(fileLimit-reserve)*share))
	}
	return n
}

// Listener is a net.Listener that holds at most Max connections.
type Listener struct {
	net.Listener
	max int

	mu sync.Mutex
	// open counts the connections handed out and not yet closed.
	open int
	// silent are the open connections that have not sent a byte, oldest
	// first: the first to close for room.
	silent list.List
	// spoken are those that have sent something but are not in a request
	// (a handshake, or idle between requests), longest waiting first.
	spoken list.List

	refused, evicted prometheus.Counter
	current          prometheus.GaugeFunc
}

// New wraps inner. Metrics go to reg when it is not nil, labelled with name.
func New(inner net.Listener, maxConns int, name string, reg prometheus.Registerer) *Listener {
	l := &Listener{Listener: inner, max: maxConns}
	labels := prometheus.Labels{"listener": name}
	l.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_connections_refused_total",
		Help: "Connections closed at accept because the listener held its maximum and none could make room.", ConstLabels: labels})
	l.evicted = prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_connections_evicted_total",
		Help: "Connections that had not started a request, closed to make room for new ones.", ConstLabels: labels})
	l.current = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_connections_open",
		Help: "Connections the listener holds.", ConstLabels: labels}, func() float64 { return float64(l.Open()) })
	if reg != nil {
		reg.MustRegister(l.refused, l.evicted, l.current,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "petrel_connections_max", Help: "The most connections the listener holds.", ConstLabels: labels},
				func() float64 { return float64(maxConns) }))
	}
	return l
}

// Max is the most connections the listener holds.
func (l *Listener) Max() int { return l.max }

// Open is how many connections it holds now.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Accept waits for a connection it can hold.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &conn{Conn: c, l: l, accepted: time.Now()}
		l.mu.Lock()
		var victim *conn
		if l.open >= l.max {
			victim = l.victimLocked()
		}
		if l.open >= l.max && victim == nil {
			l.mu.Unlock()
			l.refused.Inc()
			_ = c.Close()
			continue
		}
		l.open++
		tc.since = tc.accepted
		tc.list = &l.silent
		tc.elem = l.silent.PushBack(tc)
		l.mu.Unlock()
		if victim != nil {
			l.evicted.Inc()
			_ = victim.Close()
		}
		return tc, nil
	}
}

// victimLocked takes the connection to close for room out of its queue, or
// returns nil when none has waited long enough.
func (l *Listener) victimLocked() *conn {
	for _, q := range []struct {
		list  *list.List
		after time.Duration
	}{{&l.silent, EvictAfter}, {&l.spoken, EvictSpokenAfter}} {
		if front := q.list.Front(); front != nil && time.Since(front.Value.(*conn).since) >= q.after {
			c := front.Value.(*conn)
			l.unwaitLocked(c)
			return c
		}
	}
	return nil
}

func (l *Listener) unwaitLocked(c *conn) {
	if c.elem != nil {
		c.list.Remove(c.elem)
		c.elem, c.list = nil, nil
	}
}

// waitLocked puts c at the back of the queue of connections that spoke.
func (l *Listener) waitLocked(c *conn) {
	l.unwaitLocked(c)
	c.since = time.Now()
	c.list = &l.spoken
	c.elem = l.spoken.PushBack(c)
}

// ConnState is for http.Server.ConnState: a connection serving a request
// (or taken over by a protocol upgrade) is never closed for room; an idle
// one may be, as a client opens a new connection for a closed idle one.
func (l *Listener) ConnState(nc net.Conn, state http.ConnState) {
	c := l.find(nc)
	if c == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed {
		return
	}
	switch state {
	case http.StateActive, http.StateHijacked:
		l.unwaitLocked(c)
	case http.StateIdle:
		l.waitLocked(c)
	}
}

// find returns the connection of this listener under nc, which may be
// wrapped (TLS) around it.
func (l *Listener) find(nc net.Conn) *conn {
	for i := 0; i < 4 && nc != nil; i++ {
		if c, ok := nc.(*conn); ok && c.l == l {
			return c
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = u.NetConn()
	}
	return nil
}

// conn is one held connection.
type conn struct {
	net.Conn
	l        *Listener
	accepted time.Time
	// since is when it last started to wait (accepted, spoke, or idle).
	since time.Time
	// list is the queue elem is in (silent or spoken), nil in a request.
	list   *list.List
	elem   *list.Element
	closed bool
	// spoke is set at the first byte read from the client.
	spoke atomic.Bool
	once  sync.Once
}

// Read marks the connection as a client's at its first byte.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.spoke.Load() {
		c.spoke.Store(true)
		c.l.mu.Lock()
		// Still silent-queued: the request has not started (the server
		// marks it active after reading), so it waits among those that spoke.
		if !c.closed && c.list == &c.l.silent {
			c.l.waitLocked(c)
		}
		c.l.mu.Unlock()
	}
	return n, err
}

// Close closes the connection and gives its place back.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		c.closed = true
		c.l.unwaitLocked(c)
		c.l.open--
		c.l.mu.Unlock()
	})
	return err
}
