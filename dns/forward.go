package dns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Forwarder sends queries for other names to upstream resolvers and caches
// the answers for their TTL (negative answers for at most 30 s).
type Forwarder struct {
	upstreams []string
	udp, tcp  *mdns.Client
	metrics   *Metrics

	mu      sync.Mutex
	cache   map[cacheKey]cached
	maxSize int
}

type cacheKey struct {
	name         string
	qtype, class uint16
	do           bool
}

type cached struct {
	msg     *mdns.Msg
	expires time.Time
}

// UpstreamsFromResolvConf reads the nameservers of a resolv.conf file.
func UpstreamsFromResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			out = append(out, net.JoinHostPort(fields[1], "53"))
		}
	}
	return out, sc.Err()
}

// NewForwarder forwards to upstreams ("host:port").
func NewForwarder(upstreams []string, m *Metrics) *Forwarder {
	return &Forwarder{
		upstreams: upstreams,
		udp:       &mdns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: ourUDPSize},
		tcp:       &mdns.Client{Net: "tcp", Timeout: 2 * time.Second},
		metrics:   m,
		cache:     map[cacheKey]cached{},
		maxSize:   10000,
	}
}

// Forward answers r from the cache or an upstream; SERVFAIL when none answers.
func (f *Forwarder) Forward(r *mdns.Msg) *mdns.Msg {
	q := r.Question[0]
	key := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, class: q.Qclass}
	if opt := r.IsEdns0(); opt != nil {
		key.do = opt.Do()
	}
	now := time.Now()
	f.mu.Lock()
	c, ok := f.cache[key]
	f.mu.Unlock()
	if ok && now.Before(c.expires) {
		if f.metrics != nil {
			f.metrics.cacheHits.Inc()
		}
		out := c.msg.Copy()
		out.Id = r.Id
		out.Question = r.Question // the asker's letter case
		return out
	}
	if f.metrics != nil {
		f.metrics.cacheMisses.Inc()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var lastErr error
	for _, up := range f.upstreams {
		resp, _, err := f.udp.ExchangeContext(ctx, r, up)
		if err == nil && resp.Truncated {
			resp, _, err = f.tcp.ExchangeContext(ctx, r, up)
		}
		if err != nil {
			lastErr = err
			continue
		}
		f.store(key, resp, now)
		return resp
	}
	m := new(mdns.Msg)
	m.SetRcode(r, mdns.RcodeServerFailure)
	if lastErr == nil {
		lastErr = fmt.Errorf("no upstream resolvers configured")
	}
	return m
}

func (f *Forwarder) store(key cacheKey, resp *mdns.Msg, now time.Time) {
	if resp.Rcode != mdns.RcodeSuccess && resp.Rcode != mdns.RcodeNameError {
		return
	}
	ttl := uint32(300)
	for _, rr := range append(append([]mdns.RR{}, resp.Answer...), resp.Ns...) {
		if t := rr.Header().Ttl; t < ttl {
			ttl = t
		}
	}
	if len(resp.Answer) == 0 && ttl > 30 {
		ttl = 30
	}
	if ttl == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= f.maxSize {
		// Full: drop what has expired, and if nothing has, one arbitrary entry.
		for k, v := range f.cache {
			if now.After(v.expires) {
				delete(f.cache, k)
			}
		}
		for k := range f.cache {
			if len(f.cache) < f.maxSize {
				break
			}
			delete(f.cache, k)
		}
	}
	f.cache[key] = cached{msg: resp.Copy(), expires: now.Add(time.Duration(ttl) * time.Second)}
}
