package ingress

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"
)

type routeKey struct{}

// ServeHTTP routes one request: to the route's backend through the reverse
// proxy, or a 404/503 page that says why not.
func (c *Controller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	host := requestHost(r)
	rt := c.table.Load().lookup(host, r.URL.Path)
	sw := &statusWriter{ResponseWriter: w}
	switch {
	case rt == nil:
		c.page(sw, http.StatusNotFound, fmt.Sprintf("No Ingress rule matches host %q and path %q, and no Ingress has a defaultBackend.", host, r.URL.Path))
	case rt.backend == nil:
		c.page(sw, http.StatusServiceUnavailable, fmt.Sprintf("Ingress %s/%s routes here, but %s.", rt.namespace, rt.ingress, rt.unavailable))
	case len(rt.backend.endpoints) == 0:
		c.page(sw, http.StatusServiceUnavailable, fmt.Sprintf("Ingress %s/%s routes here, but service %s/%s has no ready endpoints.",
			rt.namespace, rt.ingress, rt.backend.namespace, rt.backend.service))
	default:
		c.proxy.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeKey{}, rt)))
	}
	c.metrics.observe(rt, sw.code(), time.Since(start))
}

// requestHost is the request's host without its port, lower case; an
// HTTP/2 request's :authority is in r.Host too.
func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// rewrite sends the request to the route's backend (the transport's dial
// picks the endpoint) with the client's Host kept and X-Forwarded-For,
// -Host and -Proto set, as ingress-nginx does.
func (c *Controller) rewrite(pr *httputil.ProxyRequest) {
	rt := pr.In.Context().Value(routeKey{}).(*route)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = rt.backend.key + ":80"
	pr.SetXForwarded()
}

// proxyError answers when no endpoint took the request: 503 when none is
// ready, 504 when the backend did not answer in time, 502 otherwise.
func (c *Controller) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	rt := r.Context().Value(routeKey{}).(*route)
	c.metrics.upstreamErrors.WithLabelValues(rt.backend.namespace, rt.backend.service).Inc()
	var ne net.Error
	switch {
	case errors.Is(err, errNoEndpoints):
		c.page(w, http.StatusServiceUnavailable, fmt.Sprintf("Service %s/%s has no ready endpoints.", rt.backend.namespace, rt.backend.service))
	case errors.As(err, &ne) && ne.Timeout():
		c.page(w, http.StatusGatewayTimeout, fmt.Sprintf("Service %s/%s did not answer in time: %v", rt.backend.namespace, rt.backend.service, err))
	default:
		c.page(w, http.StatusBadGateway, fmt.Sprintf("Service %s/%s: %v", rt.backend.namespace, rt.backend.service, err))
	}
}

// page writes an error page that says what happened and where.
func (c *Controller) page(w http.ResponseWriter, code int, why string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintf(w, "<!doctype html>\n<title>%d %s</title>\n<h1>%d %s</h1>\n<p>%s</p>\n<hr><p>Petrel ingress on node %s</p>\n",
		code, http.StatusText(code), code, http.StatusText(code), html.EscapeString(why), html.EscapeString(c.cfg.NodeName))
}

// statusWriter remembers the status code for the metrics; Unwrap lets the
// proxy reach the connection underneath (flushes, WebSocket hijacks).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
