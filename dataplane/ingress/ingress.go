// Package ingress serves the cluster's Ingresses (networking.k8s.io/v1) on
// every node, as k3s's Traefik and Cilium's ingress do, so that a cluster
// has working Ingress out of the box: Ingresses of class petrel (controller
// petrel.io/ingress), or of no class while petrel is the default class, are
// compiled into one routing table (host exact or "*." wildcard, paths Exact
// and Prefix by the specification's precedence, defaultBackend) that an
// HTTP and an HTTPS listener answer from. Requests go through the standard
// library's reverse proxy straight to the ready endpoints of the backend
// Service, taken in turn, with the next endpoint tried when one does not
// accept the connection; WebSocket upgrades pass through; HTTPS serves
// HTTP/2, the plain listener also HTTP/2 with prior knowledge. Certificates
// come from the Secrets named in spec.tls, chosen by SNI and reloaded when
// a Secret changes; other names get a self-made certificate.
//
// The node reads those Secrets with its own identity: the Node authorizer
// lets a node read, one by name, a Secret that an Ingress of this class
// names (controlplane/nodeauth). Ingress status is the control plane's
// (controlplane/controllers/ingressstatus).
package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/controllers/ingressstatus"
	"github.com/petrel-project/petrel/controlplane/controllers/sliceindex"
)

// ClassName and ControllerName are the class Petrel serves (the
// IngressClass the server creates, marked default).
const (
	ClassName      = ingressstatus.ClassName
	ControllerName = ingressstatus.ControllerName
)

// Config sets up a node's ingress.
type Config struct {
	// NodeName names the node in error pages and the default certificate.
	NodeName string
	// HTTPAddress and HTTPSAddress are the listeners; empty turns one off.
	HTTPAddress, HTTPSAddress string
	// RequestTimeout bounds the wait for a backend's response headers
	// (streams and WebSocket connections may then last).
	RequestTimeout time.Duration
	// IdleTimeout closes a client's idle keep-alive connection.
	IdleTimeout time.Duration
	// DialTimeout bounds one connection attempt to an endpoint before the
	// next is tried.
	DialTimeout time.Duration
}

// DefaultConfig are the node's defaults: :80 and :443, as k3s's Traefik
// and Cilium's ingress listen.
func DefaultConfig() Config {
	return Config{HTTPAddress: ":80", HTTPSAddress: ":443", RequestTimeout: 60 * time.Second,
		IdleTimeout: 90 * time.Second, DialTimeout: 2 * time.Second}
}

// Controller keeps the routing table and serves it.
type Controller struct {
	cfg       Config
	client    kubernetes.Interface
	ingresses networkinglisters.IngressLister
	classes   networkinglisters.IngressClassLister
	services  corelisters.ServiceLister
	slices    cache.Indexer
	secrets   *secretWatcher

	table     atomic.Pointer[table]
	certs     atomic.Pointer[certs]
	fallback  *tls.Certificate
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	metrics   *metrics
	kick      chan struct{}
}

// New builds the controller; Run starts it.
func New(cfg Config, cs kubernetes.Interface, reg prometheus.Registerer) (*Controller, error) {
	fallback, err := selfSigned(cfg.NodeName)
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, client: cs, fallback: fallback, metrics: newMetrics(reg), kick: make(chan struct{}, 1)}
	c.table.Store(&table{})
	c.certs.Store(&certs{fallback: fallback})
	d := &dialer{backends: c.backend, dialTimeout: cfg.DialTimeout, dial: (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext}
	c.transport = &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	c.proxy = &httputil.ReverseProxy{
		Rewrite:      c.rewrite,
		Transport:    c.transport,
		ErrorHandler: c.proxyError,
		// FlushInterval stays 0: the proxy flushes server-sent events and
		// responses of unknown length as they come by itself, and a flush
		// after every write (-1) cost two more write calls per response,
		// a fifth of the proxy's CPU under wrk.
		ErrorLog: log.New(slogWriter{}, "", 0),
		// Without a pool the proxy allocates a 32 KiB copy buffer per
		// response: most of the garbage, and so of the GC's work, in a
		// profile under wrk.
		BufferPool: &bufferPool{},
	}
	return c, nil
}

// bufferPool reuses the proxy's copy buffers (httputil.BufferPool).
type bufferPool struct{ pool sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if buf, ok := b.pool.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		buf = buf[:copyBufferSize]
		b.pool.Put(&buf)
	}
}

// backend finds a backend of the current table by its key.
func (c *Controller) backend(key string) *backend { return c.table.Load().backends[key] }

// Run watches Ingresses, IngressClasses, Services and EndpointSlices
// through the node's informers and, once they are listed, builds the first
// table and starts the listeners; it does not wait for that. A listener
// that cannot bind is reported and left off: the node's other work goes on.
func (c *Controller) Run(ctx context.Context, factory informers.SharedInformerFactory) error {
	ingInf := factory.Networking().V1().Ingresses()
	classInf := factory.Networking().V1().IngressClasses()
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	if err := sliceindex.Add(sliceInf.Informer()); err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	c.ingresses, c.classes, c.services, c.slices = ingInf.Lister(), classInf.Lister(), svcInf.Lister(), sliceInf.Informer().GetIndexer()
	c.secrets = newSecretWatcher(ctx, c.client, c.poke)
	handler := cache.ResourceEventHandlerFuncs{AddFunc: func(interface{}) { c.poke() },
		UpdateFunc: func(interface{}, interface{}) { c.poke() }, DeleteFunc: func(interface{}) { c.poke() }}
	for _, inf := range []cache.SharedIndexInformer{ingInf.Informer(), classInf.Informer(), svcInf.Informer(), sliceInf.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("ingress: %w", err)
		}
	}
	factory.Start(ctx.Done())
	synced := []cache.InformerSynced{ingInf.Informer().HasSynced, classInf.Informer().HasSynced,
		svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced}
	// The rest of the node does not wait for the ingress: a server that
	// does not let this node list Ingresses (an older one, a stricter
	// RBAC) leaves only the ingress off, and says so.
	go func() {
		for !cache.WaitForNamedCacheSync("ingress", waitOrTimeout(ctx, 30*time.Second), synced...) {
			if ctx.Err() != nil {
				return
			}
			slog.Warn("ingress: Ingresses, IngressClasses, Services or EndpointSlices not listed yet; the listeners wait (can this node list networking.k8s.io ingresses and ingressclasses?)")
		}
		c.rebuild()
		go c.loop(ctx)
		c.listen(ctx)
	}()
	return nil
}

// waitOrTimeout is a channel closed when ctx ends or after d.
func waitOrTimeout(ctx context.Context, d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}()
	return ch
}

// poke asks for a rebuild; many events in a burst make one.
func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Controller) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.secrets.stopAll()
			c.transport.CloseIdleConnections()
			return
		case <-c.kick:
			c.rebuild()
		}
	}
}

// rebuild compiles the table and the certificates again and swaps them in.
func (c *Controller) rebuild() {
	start := time.Now()
	all, err := c.ingresses.List(labels.Everything())
	if err != nil {
		slog.Error("ingress: list", "err", err)
		return
	}
	var ours []*networkingv1.Ingress
	for _, ing := range all {
		if c.serves(ing) {
			ours = append(ours, ing)
		}
	}
	old := c.table.Load()
	t := buildTable(ours, c, old)
	c.secrets.want(t.secrets)
	crt := buildCerts(t, c.secrets.get, c.fallback)
	for ref, why := range crt.problems {
		slog.Debug("ingress: TLS Secret not served; hosts get the default certificate", "secret", ref.String(), "reason", why)
	}
	c.certs.Store(crt)
	c.table.Store(t)
	if endpointsRemoved(old, t) {
		// Pooled connections to endpoints that are gone would fail the
		// next request sent on them.
		c.transport.CloseIdleConnections()
	}
	c.metrics.routes.Set(float64(t.routes))
	c.metrics.rebuilds.Observe(time.Since(start).Seconds())
}

// endpointsRemoved says whether a backend lost an endpoint (or went).
func endpointsRemoved(old, t *table) bool {
	for key, ob := range old.backends {
		nb := t.backends[key]
		if nb == nil {
			return true
		}
		now := map[string]bool{}
		for _, ep := range nb.endpoints {
			now[ep] = true
		}
		for _, ep := range ob.endpoints {
			if !now[ep] {
				return true
			}
		}
	}
	return false
}

// serves says whether an Ingress is this controller's.
func (c *Controller) serves(ing *networkingv1.Ingress) bool {
	return ingressstatus.Serves(ing, c.classes)
}

// service implements serviceSource.
func (c *Controller) service(namespace, name string) *corev1.Service {
	svc, err := c.services.Services(namespace).Get(name)
	if err != nil {
		return nil
	}
	return svc
}

// endpoints implements serviceSource: the ready addresses of the Service
// port's target, from its EndpointSlices (the slice port of the same name).
func (c *Controller) endpoints(svc *corev1.Service, port *corev1.ServicePort) []string {
	slices, err := sliceindex.All(c.slices, svc.Namespace, svc.Name)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var target int32
		for _, p := range s.Ports {
			if p.Port != nil && (p.Name == nil && port.Name == "" || p.Name != nil && *p.Name == port.Name) &&
				(p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				target = *p.Port
			}
		}
		if target == 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				hp := net.JoinHostPort(a, fmt.Sprint(target))
				if !seen[hp] {
					seen[hp] = true
					out = append(out, hp)
				}
			}
		}
	}
	return out
}

// listen starts the listeners that are configured.
func (c *Controller) listen(ctx context.Context) {
	errLog := log.New(slogWriter{}, "", 0)
	if c.cfg.HTTPAddress != "" {
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
		srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: c.cfg.IdleTimeout,
			Protocols: &protos, ErrorLog: errLog}
		c.serve(ctx, srv, c.cfg.HTTPAddress, false)
	}
	if c.cfg.HTTPSAddress != "" {
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
		srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: c.cfg.IdleTimeout,
			Protocols: &protos, ErrorLog: errLog,
			TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				return c.certs.Load().pick(hello.ServerName), nil
			}}}
		c.serve(ctx, srv, c.cfg.HTTPSAddress, true)
	}
}

func (c *Controller) serve(ctx context.Context, srv *http.Server, addr string, useTLS bool) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		slog.Error("ingress: cannot listen; Ingresses are not served there (free the port, or pick another with --ingress-http-address/--ingress-https-address, empty to turn it off)",
			"address", addr, "err", err)
		return
	}
	slog.Info("ingress: serving", "address", ln.Addr().String(), "tls", useTLS)
	go func() {
		var err error
		if useTLS {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("ingress: listener stopped", "address", addr, "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
}

// slogWriter sends the HTTP servers' and the proxy's own log lines (TLS
// handshake errors of scanners, broken client connections) to slog at
// debug level.
type slogWriter struct{}

func (slogWriter) Write(p []byte) (int, error) {
	slog.Debug("ingress: " + string(p))
	return len(p), nil
}
