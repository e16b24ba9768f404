package ingress

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// route is one path of one Ingress rule, or an Ingress's defaultBackend
// (path "", pathType nil).
type route struct {
	namespace, ingress string
	host               string // the rule's host as written ("" any, "*.a.b" a wildcard)
	path               string
	exact              bool
	// created orders Ingresses that claim the same host and path: the
	// oldest wins, as ingress-nginx and Traefik resolve it.
	created int64
	backend *backend
	// unavailable says why there is no backend (a Service or port that
	// does not exist, a resource backend); the request gets a 503 saying
	// so.
	unavailable string
	// metrics are the route's series, made at its first request.
	metrics atomic.Pointer[routeMetrics]
}

// metricPath is the path label of the route's metrics.
func (r *route) metricPath() string {
	if r.path == "" {
		return "(default backend)"
	}
	return r.path
}

// matches says whether a request path falls under the route, as the
// Ingress specification defines Exact and Prefix: a prefix matches whole
// path elements, so /foo matches /foo, /foo/ and /foo/bar but not /foobar;
// a trailing slash in the rule is ignored.
func (r *route) matches(path string) bool {
	if r.exact {
		return path == r.path
	}
	prefix := strings.TrimRight(r.path, "/")
	if prefix == "" {
		return true // "/" matches everything
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	rest := path[len(prefix):]
	return rest == "" || rest[0] == '/'
}

// table is the routing of every Ingress this node serves: immutable once
// built, swapped whole when something changes.
type table struct {
	exact     map[string][]*route // host → routes, most specific path first
	wildcards map[string][]*route // "*.a.b" → routes, keyed by the suffix "a.b"
	anyHost   []*route
	// defaultBackend is the oldest Ingress's spec.defaultBackend.
	defaultBackend *route
	backends       map[string]*backend // by backend.key
	// tlsHosts name the Secret that serves each host (or "*.a.b") over TLS.
	tlsHosts map[string]secretRef
	// secrets are every Secret spec.tls names, whatever its hosts.
	secrets []secretRef
	routes  int
}

// secretRef names a TLS Secret.
type secretRef struct{ namespace, name string }

func (s secretRef) String() string { return s.namespace + "/" + s.name }

// lookup finds the route of a request: a rule of the exact host, then of a
// wildcard that covers it (one label, as the specification says), then a
// rule for any host, and the default backend last. Within one host the
// longest matching path wins, Exact before Prefix at equal length.
func (t *table) lookup(host, path string) *route {
	for _, set := range [][]*route{t.exact[host], t.wildcards[wildcardSuffix(host)], t.anyHost} {
		for _, r := range set {
			if r.matches(path) {
				return r
			}
		}
	}
	return t.defaultBackend
}

// wildcardSuffix is what a "*.suffix" rule must name to cover host: host
// without its first label ("" when it has only one).
func wildcardSuffix(host string) string {
	_, rest, ok := strings.Cut(host, ".")
	if !ok {
		return ""
	}
	return rest
}

// serviceSource reads Services and their endpoints for the table.
type serviceSource interface {
	// service returns a Service, nil when there is none.
	service(namespace, name string) *corev1.Service
	// endpoints are the ready addresses (ip:port) of a Service port.
	endpoints(svc *corev1.Service, port *corev1.ServicePort) []string
}

// buildTable compiles the Ingresses (already filtered to this node's class)
// into a table; old is the table it replaces, whose backends keep their
// round-robin position when they survive.
func buildTable(ings []*networkingv1.Ingress, src serviceSource, old *table) *table {
	t := &table{exact: map[string][]*route{}, wildcards: map[string][]*route{}, backends: map[string]*backend{},
		tlsHosts: map[string]secretRef{}}
	slices.SortFunc(ings, func(a, b *networkingv1.Ingress) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Name, b.Name))
	})
	seenSecret := map[secretRef]bool{}
	for _, ing := range ings {
		created := ing.CreationTimestamp.UnixNano()
		if db := ing.Spec.DefaultBackend; db != nil && t.defaultBackend == nil {
			t.defaultBackend = t.routeTo(ing, "", "", false, created, db, src, old)
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
				path := p.Path
				if path == "" {
					path = "/"
				}
				r := t.routeTo(ing, rule.Host, path, exact, created, &p.Backend, src, old)
				switch {
				case rule.Host == "":
					t.anyHost = append(t.anyHost, r)
				case strings.HasPrefix(rule.Host, "*."):
					suffix := rule.Host[2:]
					t.wildcards[suffix] = append(t.wildcards[suffix], r)
				default:
					t.exact[rule.Host] = append(t.exact[rule.Host], r)
				}
				t.routes++
			}
		}
		for _, tls := range ing.Spec.TLS {
			if tls.SecretName == "" {
				continue
			}
			ref := secretRef{ing.Namespace, tls.SecretName}
			if !seenSecret[ref] {
				seenSecret[ref] = true
				t.secrets = append(t.secrets, ref)
			}
			for _, h := range tls.Hosts {
				if _, taken := t.tlsHosts[h]; !taken { // the oldest Ingress's Secret
					t.tlsHosts[h] = ref
				}
			}
		}
	}
	for _, set := range []map[string][]*route{t.exact, t.wildcards} {
		for _, rs := range set {
			sortRoutes(rs)
		}
	}
	sortRoutes(t.anyHost)
	return t
}

// sortRoutes orders one host's routes by precedence: longer paths first,
// Exact before Prefix at equal length, then the oldest Ingress (a stable
// sort keeps creation order).
func sortRoutes(rs []*route) {
	slices.SortStableFunc(rs, func(a, b *route) int {
		if c := cmp.Compare(len(strings.TrimRight(b.path, "/")), len(strings.TrimRight(a.path, "/"))); c != 0 {
			return c
		}
		if a.exact != b.exact {
			if a.exact {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.created, b.created)
	})
}

// routeTo makes the route of one Ingress backend, resolving its Service
// and port now so that a request finds its endpoints without a lookup.
func (t *table) routeTo(ing *networkingv1.Ingress, host, path string, exact bool, created int64,
	ib *networkingv1.IngressBackend, src serviceSource, old *table) *route {
	r := &route{namespace: ing.Namespace, ingress: ing.Name, host: host, path: path, exact: exact, created: created}
	if ib.Service == nil {
		r.unavailable = "the backend is not a Service (resource backends are not served by Petrel's ingress)"
		return r
	}
	svc := src.service(ing.Namespace, ib.Service.Name)
	if svc == nil {
		r.unavailable = fmt.Sprintf("service %s/%s does not exist", ing.Namespace, ib.Service.Name)
		return r
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		r.unavailable = fmt.Sprintf("service %s/%s is of type ExternalName, which Petrel's ingress does not follow", svc.Namespace, svc.Name)
		return r
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			continue
		}
		if (ib.Service.Port.Name != "" && sp.Name == ib.Service.Port.Name) ||
			(ib.Service.Port.Name == "" && sp.Port == ib.Service.Port.Number) {
			port = sp
			break
		}
	}
	if port == nil {
		want := ib.Service.Port.Name
		if want == "" {
			want = fmt.Sprint(ib.Service.Port.Number)
		}
		r.unavailable = fmt.Sprintf("service %s/%s has no TCP port %s", svc.Namespace, svc.Name, want)
		return r
	}
	// The key is also the host name the proxy's transport pools
	// connections under: labels of the Service's name and namespace.
	key := fmt.Sprintf("%s.%s.%d.%s", svc.Name, svc.Namespace, port.Port, backendDomain)
	b := t.backends[key]
	if b == nil {
		b = newBackend(key, svc.Namespace, svc.Name, port.Port, src.endpoints(svc, port))
		if old != nil {
			if prev := old.backends[key]; prev != nil {
				b.next.Store(prev.next.Load())
			}
		}
		t.backends[key] = b
	}
	r.backend = b
	return r
}
