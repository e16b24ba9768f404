package connlimit

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"testing"
	"time"
)

// serve starts an HTTP server on a listener that holds at most maxConns.
func serve(t *testing.T, maxConns int) (*Listener, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, maxConns, "test", nil)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Listener = l
	srv.Config.ConnState = l.ConnState
	srv.Start()
	t.Cleanup(srv.Close)
	return l, srv.URL
}

func get(url string) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return err
}

// dialSilent opens n connections that never send a byte.
func dialSilent(t *testing.T, url string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", url[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

func waitOpen(t *testing.T, l *Listener, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("listener holds %d connections, want %d", l.Open(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A listener full of silent connections makes room for a client that speaks
// by closing the oldest silent one, and never holds more than its maximum.
func TestFullListenerEvictsOldestSilentConnection(t *testing.T) {
	l, url := serve(t, 8)
	silent := dialSilent(t, url, 8)
	waitOpen(t, l, 8)
	// Too young to evict: a newcomer is refused (closed at once).
	if err := get(url); err == nil {
		t.Fatal("a ninth connection was served while eight young ones were held")
	}
	time.Sleep(EvictAfter + 100*time.Millisecond)
	if err := get(url); err != nil {
		t.Fatalf("a client was not served once silent connections could be evicted: %v", err)
	}
	// The oldest silent connection is the one that went.
	_ = silent[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := silent[0].Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the oldest silent connection is still open (read: %v)", err)
	}
	if n := l.Open(); n > 8 {
		t.Fatalf("listener holds %d connections, more than 8", n)
	}
}

// A client's idle keep-alive connection, and one that has sent part of its
// request, outlive silent connections that are older: closing a connection a
// client has used races its next write, which a POST does not survive.
func TestSpokenConnectionsOutliveSilentOnes(t *testing.T) {
	l, url := serve(t, 5)
	keepAlive := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	reused := func() (bool, error) {
		var info httptrace.GotConnInfo
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { info = i }})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := keepAlive.Do(req)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return info.Reused, err
	}
	if _, err := reused(); err != nil {
		t.Fatal(err)
	}
	partial := dialSilent(t, url, 1)[0]
	if _, err := partial.Write([]byte("GET / HT")); err != nil {
		t.Fatal(err)
	}
	silent := dialSilent(t, url, 3)
	waitOpen(t, l, 5)
	time.Sleep(EvictAfter + 100*time.Millisecond)
	// Three newcomers that keep their connections take the three silent
	// places.
	for i := 0; i < 3; i++ {
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Get(url)
		if err != nil {
			t.Fatalf("newcomer %d not served: %v", i, err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	for i, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("silent connection %d is still open (read: %v)", i, err)
		}
	}
	again, err := reused()
	if err != nil {
		t.Fatalf("the keep-alive client failed: %v", err)
	}
	if !again {
		t.Fatal("the keep-alive connection was closed for room while silent ones could go")
	}
	if _, err := partial.Write([]byte("TP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = partial.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 12)
	if _, err := io.ReadFull(partial, b); err != nil || string(b) != "HTTP/1.1 200" {
		t.Fatalf("the half-sent request was not answered: %q, %v", b, err)
	}
}

// When the flood ends the places come back.
func TestPlacesComeBackWhenConnectionsClose(t *testing.T) {
	l, url := serve(t, 4)
	silent := dialSilent(t, url, 4)
	waitOpen(t, l, 4)
	for _, c := range silent {
		c.Close()
	}
	// The server notices the closes when it reads; give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := get(url); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("not served after the flood closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestBudgetKeepsAReserve(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		share float64
		want  int
	}{
		{20000, 1, 16000},
		{20000, 0.75, 12000},
		{1024, 1, 512},
		{100, 1, 16},
	} {
		if got := Budget(tc.limit, tc.share); got != tc.want {
			t.Errorf("Budget(%d, %v) = %d, want %d", tc.limit, tc.share, got, tc.want)
		}
	}
}
