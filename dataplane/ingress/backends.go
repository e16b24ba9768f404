package ingress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

// backendDomain ends the host names the proxy's transport knows backends by
// (a reserved top-level domain: never resolved, never a real host).
const backendDomain = "backend.invalid"

// backend is one Service port behind Ingress routes: its ready endpoints,
// taken in turn.
type backend struct {
	key                string // <service>.<namespace>.<port>.backend.invalid
	namespace, service string
	port               int32
	endpoints          []string // ip:port, ready ones only
	next               atomic.Uint32
}

func newBackend(key, namespace, service string, port int32, endpoints []string) *backend {
	return &backend{key: key, namespace: namespace, service: service, port: port, endpoints: endpoints}
}

// errNoEndpoints: the Service has no ready endpoint (a 503).
var errNoEndpoints = errors.New("no ready endpoints")

// maxDialAttempts bounds the endpoints one request tries before it fails.
const maxDialAttempts = 3

// dialer connects to backends: a new connection goes to the next endpoint
// in turn, and when that endpoint refuses or does not answer, to the next
// (up to maxDialAttempts), so a pod that has just gone costs no request.
type dialer struct {
	backends    func(key string) *backend
	dialTimeout time.Duration
	// dialed counts connections per endpoint, for tests.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DialContext is the proxy transport's dial: addr is a backend's key and
// port, as the transport pools connections per backend.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || !strings.HasSuffix(host, "."+backendDomain) {
		return nil, fmt.Errorf("ingress: %q is not a backend", addr)
	}
	b := d.backends(host)
	if b == nil {
		return nil, fmt.Errorf("ingress: backend %s is gone", host)
	}
	eps := b.endpoints
	if len(eps) == 0 {
		return nil, fmt.Errorf("service %s/%s port %d: %w", b.namespace, b.service, b.port, errNoEndpoints)
	}
	start := b.next.Add(1)
	var errs []error
	for i := range min(len(eps), maxDialAttempts) {
		ep := eps[(int(start)+i)%len(eps)]
		dctx, cancel := context.WithTimeout(ctx, d.dialTimeout)
		c, err := d.dial(dctx, network, ep)
		cancel()
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("port %d: none of %d endpoints tried took the connection: %w", b.port, len(errs), errors.Join(errs...))
}
