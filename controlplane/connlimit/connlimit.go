// Package connlimit keeps a server's connections within what the process can
// hold. A flood of connections that never speak (or never finish TLS) would
// otherwise take every file descriptor, and with them etcd's and the server's
// own work: a listener from New holds at most Max connections, makes room by
// closing the oldest that have not started a request, and refuses (closes at
// once) what it cannot place. It recovers by itself when the flood ends.
package connlimit

import (
	"container/list"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// EvictAfter is how long a connection may sit without starting a request
// before a newcomer may take its place when the listener is full. A client
// that is really there finishes its handshake within milliseconds.
const EvictAfter = time.Second

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
	// waiting are the open connections that have not started a request (or
	// sit idle between requests), oldest first: the ones to close for room.
	waiting list.List

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
			if front := l.waiting.Front(); front != nil && time.Since(front.Value.(*conn).since) >= EvictAfter {
				victim = front.Value.(*conn)
				l.unwaitLocked(victim)
			}
		}
		if l.open >= l.max && victim == nil {
			l.mu.Unlock()
			l.refused.Inc()
			_ = c.Close()
			continue
		}
		l.open++
		tc.since = tc.accepted
		tc.elem = l.waiting.PushBack(tc)
		l.mu.Unlock()
		if victim != nil {
			l.evicted.Inc()
			_ = victim.Close()
		}
		return tc, nil
	}
}

func (l *Listener) unwaitLocked(c *conn) {
	if c.elem != nil {
		l.waiting.Remove(c.elem)
		c.elem = nil
	}
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
		l.unwaitLocked(c)
		c.since = time.Now()
		c.elem = l.waiting.PushBack(c)
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
	// since is when it last started to wait (accepted, or idle).
	since  time.Time
	elem   *list.Element
	closed bool
	once   sync.Once
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
