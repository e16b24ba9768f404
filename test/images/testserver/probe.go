package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// probe answers GET /probe?t=tcp:HOST:PORT&t=udp:HOST:PORT&timeout=1s: it
// tries every target from this pod at once and prints one line per target,
// "TARGET ANSWER": for tcp the body of http://HOST:PORT/hostname (the pod
// that answered), for tcpecho and udp "echo" when a TCP or UDP echo server
// sent the message back whole; "-" when
// nothing answered in time. The NetworkPolicy truth tables ask each pod
// for its whole row with one request instead of one exec per cell.
func probe(w http.ResponseWriter, r *http.Request) {
	timeout, err := time.ParseDuration(r.URL.Query().Get("timeout"))
	if err != nil || timeout <= 0 {
		timeout = time.Second
	}
	targets := r.URL.Query()["t"]
	answers := make([]string, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = probeOne(t, timeout)
		}()
	}
	wg.Wait()
	for i, t := range targets {
		fmt.Fprintf(w, "%s %s\n", t, answers[i])
	}
}

func probeOne(target string, timeout time.Duration) string {
	proto, addr, ok := strings.Cut(target, ":")
	if !ok {
		return "-"
	}
	switch proto {
	case "tcp":
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + "/hostname")
		if err != nil {
			return "-"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || len(b) == 0 {
			return "-"
		}
		return strings.ReplaceAll(string(b), " ", "_")
	case "udp", "tcpecho":
		network := proto
		if proto == "tcpecho" {
			network = "tcp"
		}
		c, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			return "-"
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		msg := "probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if _, err := c.Write([]byte(msg)); err != nil {
			return "-"
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err == nil && proto == "tcpecho" && n < len(msg) {
			// A stream may return the echo in pieces.
			var m int
			m, err = io.ReadFull(c, buf[n:len(msg)])
			n += m
		}
		if err != nil || string(buf[:n]) != msg {
			return "-"
		}
		return "echo"
	}
	return "-"
}

// held are TCP echo connections /hold keeps open, by id.
var (
	heldMu sync.Mutex
	held   = map[string]net.Conn{}
	heldID atomic.Int64
)

// hold answers GET /hold?addr=HOST:PORT (open a TCP connection to an echo
// server and keep it; prints its id) and GET /hold?id=ID&msg=MSG (send MSG
// over it and print what came back, "-" on failure): a connection that
// outlives a policy change.
func hold(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if addr := q.Get("addr"); addr != "" {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		id := strconv.FormatInt(heldID.Add(1), 10)
		heldMu.Lock()
		held[id] = c
		heldMu.Unlock()
		fmt.Fprint(w, id)
		return
	}
	heldMu.Lock()
	c := held[q.Get("id")]
	heldMu.Unlock()
	if c == nil {
		http.Error(w, "no such connection", http.StatusNotFound)
		return
	}
	msg := q.Get("msg")
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, len(msg))
	if _, err := c.Write([]byte(msg)); err != nil {
		fmt.Fprint(w, "-")
		return
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		fmt.Fprint(w, "-")
		return
	}
	w.Write(buf)
}
