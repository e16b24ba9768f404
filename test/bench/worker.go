package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ServeDataplane is the server of the dataplane, network and policy suites
// (petrelctl bench dataplane-worker --role server), run in the server netns:
// TCP on addr reads one byte and answers one byte per connection; UDP on the
// same address echoes each datagram.
func ServeDataplane(addr string) error {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return err
	}
	// HTTP on the next port: short requests on kept-alive connections.
	host, port, _ := net.SplitHostPort(addr)
	httpPort, _ := strconv.Atoi(port)
	hln, err := net.Listen("tcp4", net.JoinHostPort(host, strconv.Itoa(httpPort+1)))
	if err != nil {
		return err
	}
	go func() {
		_ = (&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }),
			ReadHeaderTimeout: 5 * time.Second}).Serve(hln)
	}()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func(c net.Conn) {
			defer c.Close()
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err == nil {
				_, _ = c.Write(b)
			}
			// Wait for the client to close first, so TIME_WAIT stays on its
			// side, where SO_LINGER 0 discards it.
			_, _ = c.Read(b)
		}(c)
	}
}

// WorkerResult is what a dataplane client run prints, and the suites read
// back.
type WorkerResult struct {
	Ops     int64   `json:"ops"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
}

// DriveDataplane runs the client load: concurrency workers doing, for
// "tcp", connect + one byte each way + close (SO_LINGER 0), for "udp", one
// datagram out and its echo back on an unconnected socket, or for "http",
// GET requests on kept-alive connections, for d.
func DriveDataplane(mode, target string, concurrency int, d time.Duration) error {
	raddr, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		return err
	}
	var ops, errs atomic.Int64
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch mode {
			case "tcp":
				tcpLoop(target, deadline, &ops, &errs)
			case "udp":
				udpLoop(raddr, deadline, &ops, &errs)
			case "http":
				httpLoop(client, "http://"+target+"/", deadline, &ops, &errs)
			}
		}()
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(WorkerResult{Ops: ops.Load(), Errors: errs.Load(), Seconds: time.Since(start).Seconds()})
}

func tcpLoop(target string, deadline time.Time, ops, errs *atomic.Int64) {
	b := []byte{'x'}
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp4", target, time.Second)
		if err != nil {
			errs.Add(1)
			continue
		}
		tc := c.(*net.TCPConn)
		_ = tc.SetLinger(0)
		_ = tc.SetDeadline(time.Now().Add(time.Second))
		if _, err := tc.Write(b); err != nil {
			errs.Add(1)
		} else if _, err := io.ReadFull(tc, b); err != nil {
			errs.Add(1)
		} else {
			ops.Add(1)
		}
		tc.Close()
	}
}

func udpLoop(raddr *net.UDPAddr, deadline time.Time, ops, errs *atomic.Int64) {
	pc, err := net.ListenUDP("udp4", nil)
	if err != nil {
		errs.Add(1)
		return
	}
	defer pc.Close()
	b := make([]byte, 64)
	for time.Now().Before(deadline) {
		if _, err := pc.WriteToUDP([]byte("ping"), raddr); err != nil {
			errs.Add(1)
			continue
		}
		_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := pc.ReadFromUDP(b); err != nil {
			errs.Add(1) // lost or refused: the next request goes on
			continue
		}
		ops.Add(1)
	}
}

func httpLoop(client *http.Client, url string, deadline time.Time, ops, errs *atomic.Int64) {
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err != nil {
			errs.Add(1)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			ops.Add(1)
		} else {
			errs.Add(1)
		}
	}
}
