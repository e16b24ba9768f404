// Package proxy serves the API subresources that pass a request on instead
// of storing anything: pods/, services/ and nodes/proxy to the pod, a ready
// endpoint or the node's server, and pods/log, exec, attach and
// portforward to the node server of the pod's node. They share nothing with
// the REST handlers but the error answers, which the API server lends them.
package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"

	"net/url"
	"strconv"
	"strings"
	"time"

	proxyutil "k8s.io/apimachinery/pkg/util/proxy"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// Proxy passes requests on to pods, services and nodes.
type Proxy struct {
	// Registry holds the stores the targets are read from and runs the
	// admission of exec, attach and port-forward (nil: none runs).
	Registry *generic.Registry
	// NodeTransport reaches node servers with the API server's client
	// certificate; nil: nodes cannot be reached.
	NodeTransport http.RoundTripper
	// WriteError answers with a Kubernetes Status, as the rest of the API.
	WriteError func(http.ResponseWriter, *http.Request, error)
	// Context bounds a request's work as the API server bounds any other
	// request's (the client's timeout, or RequestTimeout).
	Context func(*http.Request) (context.Context, context.CancelFunc)
}

// Request is the resource request a proxy or node subresource came in, as
// the API server parsed it.
type Request struct {
	// Resource and Store are the resource the subresource is of (pods,
	// services or nodes) and its store.
	Resource *generic.Resource
	Store    *generic.Store
	// Namespace, Name and Subresource name the object and what is asked of
	// it.
	Namespace, Name, Subresource string
	// Path is what follows a proxy subresource ("a/b" of
	// .../pods/p/proxy/a/b).
	Path string
}

// proxyTransport reaches pods and services (pod IPs route on the API
// server's host) over plain HTTP, or HTTPS without checking the pod's
// certificate, as Kubernetes' API server does: a pod's serving certificate
// is nothing the cluster vouches for.
var proxyTransport = &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as Kubernetes' proxy to pods
	TLSHandshakeTimeout: 10 * time.Second,
	IdleConnTimeout:     90 * time.Second,
	MaxIdleConnsPerHost: 4,
}

// Serve serves pods/proxy, services/proxy and nodes/proxy: the
// request (any method, upgrades included) goes to the pod, to a ready
// endpoint of the service, or to the node's server, with the path after
// "proxy" and the query, as Kubernetes' API server proxies them. The name
// may be "name", "name:port" or "scheme:name:port".
func (px *Proxy) Serve(w http.ResponseWriter, r *http.Request, req *Request) {
	// No request deadline: a proxied stream (a watch, a WebSocket) is long
	// running, as in Kubernetes; it ends when either side goes.
	scheme, name, port, ok := utilnet.SplitSchemeNamePort(req.Name)
	if !ok || name == "" {
		px.WriteError(w, r, apierrors.NewBadRequest(fmt.Sprintf("invalid %s request %q", req.Resource.GVR.Resource, req.Name)))
		return
	}
	var loc *url.URL
	transport := http.RoundTripper(proxyTransport)
	var err error
	switch req.Resource.Kind {
	case "Pod":
		loc, err = px.podLocation(r, req, scheme, name, port)
	case "Service":
		loc, err = px.serviceLocation(r, req, scheme, name, port)
	case "Node":
		loc, err = px.nodeLocation(r, scheme, name, port)
		if err == nil && loc.Scheme == "https" {
			if px.NodeTransport == nil {
				err = apierrors.NewServiceUnavailable("nodes/proxy needs a connection to nodes, which this API server is not configured with")
			}
			transport = px.NodeTransport
		}
	}
	if err != nil {
		px.WriteError(w, r, err)
		return
	}
	loc.Path = req.Path
	if loc.Path != "" && !strings.HasPrefix(loc.Path, "/") {
		loc.Path = "/" + loc.Path
	}
	if !strings.HasSuffix(loc.Path, "/") && strings.HasSuffix(r.URL.Path, "/") {
		loc.Path += "/"
	}
	// A bare .../proxy is sent to .../proxy/ first, as Kubernetes does, so
	// that relative links in the answer resolve under the proxy.
	if loc.Path == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		target := r.URL.Path + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", target)
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	loc.RawQuery = r.URL.RawQuery
	// As Kubernetes' proxy: absolute links and redirects in HTML answers
	// are rewritten to go through the proxy again (/x becomes .../proxy/x,
	// a path on the same server, as upstream writes it).
	prefix := strings.TrimSuffix(r.URL.Path, req.Path)
	transport = &proxyutil.Transport{PathPrepend: strings.TrimSuffix(prefix, "/"), RoundTripper: transport}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = loc
			pr.Out.Host = loc.Host
			// The user's credentials are for the API server only.
			pr.Out.Header.Del("Authorization")
			for k := range pr.Out.Header {
				if strings.HasPrefix(k, "Impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
		},
		Transport:     transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			px.WriteError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("error trying to reach service: %v", err)))
		},
	}
	proxy.ServeHTTP(w, r)
}

// podLocation is the pod's address: its IP and the port asked for, else
// the first port a container declares.
func (px *Proxy) podLocation(r *http.Request, req *Request, scheme, name, port string) (*url.URL, error) {
	obj, err := req.Store.Get(r.Context(), req.Namespace, name)
	if err != nil {
		return nil, err
	}
	pod := obj.(*corev1.Pod)
	if port == "" {
		for _, c := range pod.Spec.Containers {
			if len(c.Ports) > 0 {
				port = strconv.Itoa(int(c.Ports[0].ContainerPort))
				break
			}
		}
	}
	ip := pod.Status.PodIP
	if ip == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s has no IP yet", name))
	}
	if err := proxyableIP(ip); err != nil {
		return nil, err
	}
	loc := &url.URL{Scheme: orHTTP(scheme), Host: ip}
	if port != "" {
		loc.Host = net.JoinHostPort(ip, port)
	}
	return loc, nil
}

// serviceLocation is a random ready endpoint of the service for the port
// asked for (a port name, or a service port number), as Kubernetes picks.
func (px *Proxy) serviceLocation(r *http.Request, req *Request, scheme, name, port string) (*url.URL, error) {
	obj, err := req.Store.Get(r.Context(), req.Namespace, name)
	if err != nil {
		return nil, err
	}
	svc := obj.(*corev1.Service)
	portName := port
	if n, err := strconv.Atoi(port); err == nil {
		found := false
		for _, p := range svc.Spec.Ports {
			if int(p.Port) == n {
				portName, found = p.Name, true
				break
			}
		}
		if !found {
			return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("no service port %d found for service %q", n, name))
		}
	}
	slices := px.Registry.Store(discoveryv1.SchemeGroupVersion.WithResource("endpointslices"))
	if slices == nil {
		return nil, apierrors.NewServiceUnavailable("endpointslices are not served")
	}
	items, err := slices.CachedList(r.Context(), req.Namespace)
	if err != nil {
		return nil, err
	}
	var candidates []string
	for _, o := range items {
		es := o.(*discoveryv1.EndpointSlice)
		if es.Labels[discoveryv1.LabelServiceName] != name || es.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for _, p := range es.Ports {
			if p.Port == nil || ptrString(p.Name) != portName {
				continue
			}
			for _, e := range es.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					candidates = append(candidates, net.JoinHostPort(a, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	if len(candidates) == 0 {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("no endpoints available for service %q", req.Name))
	}
	host := candidates[rand.IntN(len(candidates))]
	if h, _, _ := net.SplitHostPort(host); proxyableIP(h) != nil {
		return nil, proxyableIP(h)
	}
	return &url.URL{Scheme: orHTTP(scheme), Host: host}, nil
}

// nodeLocation is the node's server (HTTPS with the API server's client
// certificate), or the port asked for on the node's address.
func (px *Proxy) nodeLocation(r *http.Request, scheme, name, port string) (*url.URL, error) {
	obj, err := px.Registry.Store(corev1.SchemeGroupVersion.WithResource("nodes")).Get(r.Context(), "", name)
	if err != nil {
		return nil, err
	}
	node := obj.(*corev1.Node)
	host, err := NodeServer(node)
	if err != nil {
		return nil, err
	}
	if port != "" {
		h, _, _ := net.SplitHostPort(host)
		host = net.JoinHostPort(h, port)
	}
	if scheme == "" {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: host}, nil
}

// proxyableIP refuses loopback and link-local targets, as Kubernetes does,
// so the proxy cannot be turned on the API server's own host.
func proxyableIP(s string) error {
	ip := net.ParseIP(s)
	if ip == nil {
		return apierrors.NewBadRequest(fmt.Sprintf("%q is not a valid IP address", s))
	}
	if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return apierrors.NewBadRequest("address not allowed")
	}
	return nil
}

func orHTTP(scheme string) string {
	if scheme == "" {
		return "http"
	}
	return scheme
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
