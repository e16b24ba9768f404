// Package serverlb is the node's client-side load balancer of API servers,
// as k3s's agent has: a TCP proxy on the node's loopback that every client
// of the node dials. Each connection goes to the server in use; when that
// one refuses, or fails its health check while another passes, new
// connections go to the next live server and the connections to the dead one
// are closed, so that watches and requests reconnect through the proxy at
// once. TLS passes through untouched: clients verify the servers'
// certificates (which name 127.0.0.1) and present their own.
//
// The servers are those given (--server A,B) and those the node learns from
// the kubernetes Service's endpoints, which list the live servers.
package serverlb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Timing of the load balancer; variables so that tests can shorten them.
var (
	// DialTimeout bounds one connect to a server (a machine gone answers
	// nothing).
	DialTimeout = 2 * time.Second
	// HealthInterval is how often each server's /readyz is asked.
	HealthInterval = 2 * time.Second
	// LearnInterval is how often the kubernetes endpoints are read.
	LearnInterval = 10 * time.Second
)

// LB is a running load balancer.
type LB struct {
	ln    net.Listener
	seeds []string
	// stateFile keeps the learned servers across restarts ("" : not kept).
	stateFile string

	mu sync.Mutex
	// health asks a server's /readyz.
	health *http.Client
	// servers are host:port, seeds first, then learned ones.
	servers []string
	current string
	healthy map[string]bool
	// conns are the open client connections by the server they go to.
	conns map[string]map[net.Conn]struct{}
}

// ParseServers reads --server: comma-separated https URLs (https://A:6443).
func ParseServers(urls []string) ([]string, error) {
	var out []string
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("--server %q: want https://HOST:PORT", raw)
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "6443")
		}
		if !slices.Contains(out, host) {
			out = append(out, host)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("--server: no server given")
	}
	return out, nil
}

// Start listens on 127.0.0.1 (a free port) and proxies to servers
// (host:port, tried in order); caPEM, when given, verifies the servers'
// certificates in health checks. It runs until ctx ends.
func Start(ctx context.Context, servers []string, caPEM []byte) (*LB, error) {
	return StartWithState(ctx, servers, caPEM, "")
}

// StartWithState is Start that keeps the servers it learns in stateFile
// (one host:port a line) and starts with those of an earlier run too: a
// node restarted while the server it was given is down still finds the
// others.
func StartWithState(ctx context.Context, servers []string, caPEM []byte, stateFile string) (*LB, error) {
	if len(servers) == 0 {
		return nil, errors.New("server load balancer: no server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("server load balancer: %w", err)
	}
	l := &LB{ln: ln, seeds: slices.Clone(servers), servers: slices.Clone(servers), current: servers[0],
		healthy: map[string]bool{}, conns: map[string]map[net.Conn]struct{}{}}
	l.SetCA(caPEM)
	l.stateFile = stateFile
	if stateFile != "" {
		if b, err := os.ReadFile(stateFile); err == nil {
			var kept []string
			for _, line := range strings.Fields(string(b)) {
				if _, _, err := net.SplitHostPort(line); err == nil {
					kept = append(kept, line)
				}
			}
			l.SetLearned(kept)
		}
	}
	for _, s := range servers {
		l.healthy[s] = true
	}
	go func() {
		<-ctx.Done()
		ln.Close()
		l.closeAll()
	}()
	go l.serve()
	go l.checkHealth(ctx)
	slog.Info("server load balancer: up", "address", ln.Addr().String(), "servers", servers)
	return l, nil
}

// SetCA makes the health checks verify the servers' certificates against
// the cluster's CA (PEM); until it is known (a node joining with a token
// learns it over the balancer itself), they only ask /readyz, sending
// nothing of the node's.
func (l *LB) SetCA(caPEM []byte) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true} //nolint:gosec // see above
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if pool.AppendCertsFromPEM(caPEM) {
			tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		}
	}
	client := &http.Client{Timeout: DialTimeout, Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil,
		DialContext: (&net.Dialer{Timeout: DialTimeout}).DialContext, DisableKeepAlives: true}}
	l.mu.Lock()
	l.health = client
	l.mu.Unlock()
}

// URL is what the node's clients dial: https://127.0.0.1:<port>.
func (l *LB) URL() string { return "https://" + l.ln.Addr().String() }

// Servers are the servers known, in the order tried.
func (l *LB) Servers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.servers)
}

// Current is the server new connections go to first.
func (l *LB) Current() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.current
}

// SetLearned makes the servers the seeds and learned (host:port), in that
// order; a server no longer listed has its connections closed unless it is
// a seed.
func (l *LB) SetLearned(learned []string) {
	l.mu.Lock()
	next := slices.Clone(l.seeds)
	for _, s := range learned {
		if !slices.Contains(next, s) {
			next = append(next, s)
		}
	}
	if slices.Equal(next, l.servers) {
		l.mu.Unlock()
		return
	}
	slog.Info("server load balancer: servers", "now", next, "were", l.servers)
	var gone []net.Conn
	for s, conns := range l.conns {
		if !slices.Contains(next, s) {
			for c := range conns {
				gone = append(gone, c)
			}
		}
	}
	for _, s := range next {
		if _, ok := l.healthy[s]; !ok {
			l.healthy[s] = true
		}
	}
	l.servers = next
	if !slices.Contains(next, l.current) {
		l.current = next[0]
	}
	l.mu.Unlock()
	if l.stateFile != "" {
		tmp := l.stateFile + ".tmp"
		err := os.WriteFile(tmp, []byte(strings.Join(next, "\n")+"\n"), 0o600)
		if err == nil {
			err = os.Rename(tmp, l.stateFile)
		}
		if err != nil {
			slog.Warn("server load balancer: keeping the servers", "file", l.stateFile, "err", err)
		}
	}
	for _, c := range gone {
		c.Close()
	}
}

func (l *LB) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			slog.Warn("server load balancer: accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go l.proxy(c)
	}
}

// order is the servers to try: the current one, then the healthy ones,
// then the rest (a health check may be stale).
func (l *LB) order() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []string{l.current}
	for _, pass := range []bool{true, false} {
		for _, s := range l.servers {
			if l.healthy[s] == pass && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func (l *LB) proxy(c net.Conn) {
	var upstream net.Conn
	var server string
	var errs []error
	for _, s := range l.order() {
		u, err := net.DialTimeout("tcp", s, DialTimeout)
		if err == nil {
			upstream, server = u, s
			break
		}
		errs = append(errs, err)
		l.mu.Lock()
		if l.healthy[s] {
			slog.Warn("server load balancer: server unreachable", "server", s, "err", err)
		}
		l.healthy[s] = false
		l.mu.Unlock()
	}
	if upstream == nil {
		slog.Warn("server load balancer: no server reachable", "err", errors.Join(errs...))
		c.Close()
		return
	}
	l.mu.Lock()
	if l.current != server {
		slog.Info("server load balancer: now using", "server", server, "was", l.current)
		l.current = server
	}
	if l.conns[server] == nil {
		l.conns[server] = map[net.Conn]struct{}{}
	}
	l.conns[server][c] = struct{}{}
	l.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, upstream); done <- struct{}{} }()
	<-done
	c.Close()
	upstream.Close()
	<-done
	l.mu.Lock()
	delete(l.conns[server], c)
	l.mu.Unlock()
}

// checkHealth asks every server's /readyz each HealthInterval. When the
// server in use fails and another passes, the other becomes current and
// the connections to the failed one are closed.
func (l *LB) checkHealth(ctx context.Context) {
	tick := time.NewTicker(HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		servers := l.Servers()
		results := make([]bool, len(servers))
		var wg sync.WaitGroup
		for i, s := range servers {
			wg.Add(1)
			go func() { defer wg.Done(); results[i] = l.ready(ctx, s) }()
		}
		wg.Wait()
		l.mu.Lock()
		var healthy []string
		for i, s := range servers {
			if l.healthy[s] != results[i] {
				slog.Info("server load balancer: health", "server", s, "ready", results[i])
			}
			l.healthy[s] = results[i]
			if results[i] {
				healthy = append(healthy, s)
			}
		}
		var drop []net.Conn
		if old := l.current; !l.healthy[old] && len(healthy) > 0 {
			l.current = healthy[0]
			slog.Info("server load balancer: failing over", "from", old, "to", l.current)
			for c := range l.conns[old] {
				drop = append(drop, c)
			}
		}
		l.mu.Unlock()
		for _, c := range drop {
			c.Close()
		}
	}
}

func (l *LB) ready(ctx context.Context, server string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+server+"/readyz", nil)
	if err != nil {
		return false
	}
	l.mu.Lock()
	client := l.health
	l.mu.Unlock()
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (l *LB) closeAll() {
	l.mu.Lock()
	var all []net.Conn
	for _, conns := range l.conns {
		for c := range conns {
			all = append(all, c)
		}
	}
	l.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

// Learn reads the kubernetes Service's endpoints (the live servers) every
// LearnInterval and adds them to the servers, until ctx ends.
func (l *LB) Learn(ctx context.Context, cs kubernetes.Interface) {
	for {
		if learned, err := Endpoints(ctx, cs); err == nil && len(learned) > 0 {
			l.SetLearned(learned)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(LearnInterval):
		}
	}
}

// Endpoints are the servers the kubernetes Service's EndpointSlices list
// (ready addresses, host:port).
func Endpoints(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(cctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, es := range list.Items {
		for _, p := range es.Ports {
			if p.Port == nil || (p.Name != nil && *p.Name != "https") {
				continue
			}
			for _, e := range es.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					if s := net.JoinHostPort(a, strconv.Itoa(int(*p.Port))); !slices.Contains(out, s) {
						out = append(out, s)
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
