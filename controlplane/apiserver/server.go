// Package apiserver serves the Kubernetes REST API over HTTP: discovery,
// OpenAPI, the REST verbs with their subresources, watch, patch and apply,
// Table output and Status errors. Requests go through the registry's
// per-resource descriptions to the storage; a handler never talks to etcd.
package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-project/petrel/controlplane/apiserver/filters"
	"github.com/petrel-project/petrel/controlplane/apiserver/proxy"
	"github.com/petrel-project/petrel/controlplane/apiserver/resourcemetrics"
	"github.com/petrel-project/petrel/controlplane/apiserver/tokenauth"

	"github.com/petrel-project/petrel/controlplane/apiserver/openapi"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/version"

	"github.com/petrel-project/petrel/controlplane/audit"
	"github.com/petrel-project/petrel/controlplane/metricsapi"
	"github.com/petrel-project/petrel/controlplane/nodeauth"
	"github.com/petrel-project/petrel/controlplane/rbac"
	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/petrel-project/petrel/controlplane/tokens"
)

// MaxRequestBodyBytes is the largest request body accepted, as Kubernetes (3 MiB
// objects plus overhead).
const MaxRequestBodyBytes = 3 << 20

// Config is what the server serves.
type Config struct {
	Resources []*registry.Resource
	// Registry serves the resources: a store per resource with its strategy
	// and the admission chain.
	Registry *generic.Registry
	Version  version.Info
	// Registry lets /metrics serve the process's metrics.
	Metrics *prometheus.Registry
	// Ready reports whether the server is ready for traffic (for /readyz).
	Ready func() error
	// NodeTransport reaches node servers (pods/log, exec, attach,
	// portforward) with the API server's client certificate.
	NodeTransport http.RoundTripper
	// Tokens issues and checks service account tokens; nil serves none.
	Tokens *tokens.Issuer
	// Authorizer decides what each user may do (RBAC); nil lets every
	// authenticated client do everything.
	Authorizer *rbac.Authorizer
	// NodeAuthorizer, with Authorizer, decides for nodes first and runs
	// NodeRestriction admission; nil: nodes are users like any other.
	NodeAuthorizer *nodeauth.Authorizer
	// Aggregator, when set, serves the group versions APIServices hand to
	// other servers (API aggregation).
	Aggregator Aggregator
	// MaxReadOnlyInflight and MaxMutatingInflight bound the requests served
	// at once before new ones are answered 429 (0: Kubernetes' defaults).
	MaxReadOnlyInflight, MaxMutatingInflight int
	// Audit records requests by its policy; nil keeps no audit log.
	Audit *audit.Logger
	// UI serves the web view at /ui/ (package webui); nil serves none. It
	// sits behind the same authentication and authorization as the API.
	UI http.Handler
}

// Server is the API server's HTTP handler.
type Server struct {
	cfg     Config
	openapi *openapi.Service
	// static are the endpoints of the built-in resources, listed the
	// resources (and reviews) discovery shows.
	static []*endpoint
	listed []*registry.Resource
	// routes are what is served now: the built-in endpoints and those of
	// the custom resources the registry holds; replaced whole when the
	// registry changes.
	routes   atomic.Pointer[routes]
	customMu sync.Mutex
	custom   map[*registry.Resource]*endpoint
	metrics  *serverMetrics
	mux      *http.ServeMux
	inflight *filters.InflightLimit
	fairness atomic.Pointer[filters.Fairness]
	// metricsAPI reads the nodes' figures for the built-in
	// metrics.k8s.io/v1beta1 (nil: not served), metricsRes lists it in
	// discovery.
	metricsAPI *metricsapi.Fetcher
	metricsRes []*registry.Resource
	// proxy serves the proxy subresources and those passed on to nodes.
	proxy *proxy.Proxy
	// tokenAuth says whose tokens are and issues them.
	tokenAuth *tokenauth.Authenticator
}

// endpoint is one served resource with its storage and field manager.
type endpoint struct {
	res          *registry.Resource
	store        *generic.Store
	fieldManager *managedfields.FieldManager
	statusFM     *managedfields.FieldManager
	// reset are the fields the main endpoint does not own (status), for
	// the managed fields of a create.
	reset map[fieldpath.APIVersion]fieldpath.Filter
}

// New builds the handler.
func New(cfg Config) (*Server, error) {
	s := &Server{
		cfg:     cfg,
		custom:  map[*registry.Resource]*endpoint{},
		metrics: newServerMetrics(cfg.Metrics),
	}
	s.tokenAuth = &tokenauth.Authenticator{Tokens: cfg.Tokens, Registry: cfg.Registry}
	s.proxy = &proxy.Proxy{Registry: cfg.Registry, NodeTransport: cfg.NodeTransport, WriteError: s.writeError, Context: requestContext}
	readOnly, mutating := cfg.MaxReadOnlyInflight, cfg.MaxMutatingInflight
	if readOnly <= 0 {
		readOnly = filters.DefaultMaxReadOnlyInflight
	}
	if mutating <= 0 {
		mutating = filters.DefaultMaxMutatingInflight
	}
	var reg prometheus.Registerer
	if cfg.Metrics != nil {
		reg = cfg.Metrics
	}
	s.inflight = filters.NewInflightLimit(readOnly, mutating, reg)
	// The reviews are listed (discovery, OpenAPI) but not stored.
	listed := append(append([]*registry.Resource{}, cfg.Resources...), registry.Reviews()...)
	oa, err := openapi.Build(Scheme, listed)
	if err != nil {
		return nil, fmt.Errorf("building OpenAPI: %w", err)
	}
	s.openapi = oa
	for _, res := range cfg.Resources {
		st := cfg.Registry.Store(res.GVR)
		if st == nil {
			return nil, fmt.Errorf("no storage for %s", res.GVR)
		}
		ep, err := newEndpoint(res, st, oa.TypeConverter(), Scheme, Scheme, Scheme, oa)
		if err != nil {
			return nil, err
		}
		s.static = append(s.static, ep)
	}
	s.listed = listed
	s.setupMetricsAPI()
	s.refresh()
	if cfg.Aggregator != nil {
		cfg.Aggregator.OnChange(s.refresh)
	}
	cfg.Registry.OnChange(s.refresh)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/healthz", s.health)
	s.mux.HandleFunc("/livez", s.health)
	s.mux.HandleFunc("/readyz", s.ready)
	s.mux.HandleFunc("/healthz/", s.health)
	s.mux.HandleFunc("/livez/", s.health)
	s.mux.HandleFunc("/readyz/", s.ready)
	s.mux.HandleFunc("/version", s.version)
	s.mux.HandleFunc("/version/", s.version)
	if cfg.Metrics != nil {
		s.mux.Handle("/metrics", metricsHandler(cfg.Metrics))
	}
	// Profiles for operators holding the admin certificate (see docs/cli.md).
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	oidc := &tokenauth.Discovery{Tokens: cfg.Tokens, WriteError: s.writeError, NotFound: s.notFound}
	s.mux.HandleFunc(tokenauth.OIDCConfigPath, oidc.ServeConfig)
	s.mux.HandleFunc(tokenauth.JWKSPath, oidc.ServeJWKS)
	s.mux.HandleFunc("/openapi/v2", s.openapi.ServeV2)
	s.mux.HandleFunc("/openapi/v3", s.openapi.ServeV3Index)
	s.mux.HandleFunc("/openapi/v3/", s.openapi.ServeV3Doc)
	// Reviews kubectl auth can-i and whoami ask for (no stored objects).
	s.mux.HandleFunc("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", s.selfSubjectAccessReview)
	s.mux.HandleFunc("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", s.selfSubjectRulesReview)
	s.mux.HandleFunc("/apis/authorization.k8s.io/v1/subjectaccessreviews", s.subjectAccessReview)
	s.mux.HandleFunc("/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews", s.localSubjectAccessReview)
	s.mux.HandleFunc("/apis/authentication.k8s.io/v1/selfsubjectreviews", s.selfSubjectReview)
	s.mux.HandleFunc("/apis/authentication.k8s.io/v1/tokenreviews", s.tokenReview)
	s.mux.Handle(resourcemetrics.Prefix, &resourcemetrics.Handler{Fetcher: s.metricsAPI, Registry: cfg.Registry,
		WriteError: s.writeError, NotFound: s.notFound, WriteJSON: writeJSON, Context: requestContext})
	// Without it the subtree pattern above would redirect the group
	// version's own path.
	s.mux.HandleFunc(strings.TrimSuffix(resourcemetrics.Prefix, "/"), s.serveDiscoveryOrAPI)
	s.mux.HandleFunc("/api", s.serveDiscoveryOrAPI)
	s.mux.HandleFunc("/api/", s.serveDiscoveryOrAPI)
	s.mux.HandleFunc("/apis", s.serveDiscoveryOrAPI)
	s.mux.HandleFunc("/apis/", s.serveDiscoveryOrAPI)
	if cfg.UI != nil {
		s.mux.Handle("/ui", cfg.UI)
		s.mux.Handle("/ui/", cfg.UI)
	}
	s.mux.HandleFunc("/", s.notFound)
	return s, nil
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if aw, ar := s.beginAudit(w, r); aw != nil {
		panicked := true
		defer func() { aw.Finish(panicked) }()
		s.serve(aw, ar, aw.Record())
		panicked = false
		return
	}
	s.serve(w, r, nil)
}

// serve is ServeHTTP after the audit record began (rec nil: none).
func (s *Server) serve(w http.ResponseWriter, r *http.Request, rec *audit.Record) {
	before, _ := userFrom(r.Context())
	r, ok := s.impersonate(w, r)
	if !ok {
		return
	}
	if after, _ := userFrom(r.Context()); rec != nil && after.Name != before.Name {
		rec.SetImpersonated(audit.User{Name: after.Name, UID: after.UID, Groups: after.Groups})
	}
	if f := s.fairness.Load(); f != nil {
		u, _ := userFrom(r.Context())
		attrs := requestAttributes(r, u)
		if err := f.Serve(w, r, attrs, func() { s.authorizeAndServe(w, r, &attrs) }); err != nil {
			// client-go waits Retry-After seconds and sends the request again.
			w.Header().Set("Retry-After", "1")
			s.writeError(w, r, err)
		}
		return
	}
	done, err := s.inflight.Admit(r)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		s.writeError(w, r, err)
		return
	}
	defer done()
	s.authorizeAndServe(w, r, nil)
}

// authorizeAndServe authorizes the request (attrs: its attributes when
// already read, else nil) and serves it.
func (s *Server) authorizeAndServe(w http.ResponseWriter, r *http.Request, attrs *rbac.Attributes) {
	if !s.authorize(w, r, attrs) {
		return
	}
	if h := s.aggregated(r); h != nil {
		h.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, withWarnings(w, r))
}

// SetFairness puts API Priority and Fairness in front of every request
// from now on, in place of the in-flight limits (which hold until then:
// the controller needs this server to read its configuration).
func (s *Server) SetFairness(f *filters.Fairness) { s.fairness.Store(f) }

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok")
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	s.health(w, r)
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Version)
}

// notFound answers a path the server does not serve (group, version,
// resource or subresource) as Kubernetes does: reason NotFound with its
// generic message and empty details. NewNotFound is for objects: given no
// resource it made ` "<path>" not found`, the path posing as a name.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusNotFound, r.Method, schema.GroupResource{}, "", "", 0, false))
}

// request is a parsed resource request.
type request struct {
	ep          *endpoint
	gv          schema.GroupVersion
	namespace   string
	name        string
	subresource string
	verb        string
	// proxyPath is what follows a proxy subresource ("a/b" of
	// .../pods/p/proxy/a/b).
	proxyPath string
}

// proxyRequest is req as package proxy reads it.
func proxyRequest(req *request) *proxy.Request {
	return &proxy.Request{Resource: req.ep.res, Store: req.ep.store, Namespace: req.namespace, Name: req.name,
		Subresource: req.subresource, Path: req.proxyPath}
}

func (s *Server) serveDiscoveryOrAPI(w http.ResponseWriter, r *http.Request) {
	path := strings.Trim(r.URL.Path, "/")
	parts := strings.Split(path, "/")
	var gv schema.GroupVersion
	var rest []string
	switch {
	case parts[0] == "api":
		if len(parts) == 1 {
			s.serveAPIVersions(w, r)
			return
		}
		gv = schema.GroupVersion{Version: parts[1]}
		rest = parts[2:]
	case parts[0] == "apis":
		if len(parts) == 1 {
			s.serveAPIGroups(w, r)
			return
		}
		if len(parts) == 2 {
			s.serveAPIGroup(w, r, parts[1])
			return
		}
		gv = schema.GroupVersion{Group: parts[1], Version: parts[2]}
		rest = parts[3:]
	}
	rt := s.routes.Load()
	if len(rest) == 0 && rt.discovery.ResourceLists[gv] != nil {
		// Groups of reviews only (authorization.k8s.io) are listed too.
		s.serveResourceList(w, r, gv)
		return
	}
	if _, ok := rt.byGroupVer[gv]; !ok {
		s.notFound(w, r)
		return
	}
	req, ok := rt.parse(gv, rest, r.Method, r.URL.Query().Get("watch"))
	if !ok {
		s.notFound(w, r)
		return
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	s.serveResource(rec, r, req)
	if req.verb != "watch" {
		s.metrics.observe(req, rec.code, time.Since(start))
	}
}

// parse splits "<resource>[/<name>[/<sub>]]" and the namespaced form.
func (rt *routes) parse(gv schema.GroupVersion, rest []string, method, watchParam string) (*request, bool) {
	req := &request{gv: gv}
	key := func(resource string) *endpoint { return rt.byPath[gv.Group+"/"+gv.Version+"/"+resource] }
	if rest[0] == "namespaces" && len(rest) >= 3 {
		if ep := key(rest[2]); ep != nil && ep.res.Namespaced {
			req.ep, req.namespace = ep, rest[1]
			rest = rest[2:]
		}
	}
	if req.ep == nil {
		req.ep = key(rest[0])
		if req.ep == nil {
			return nil, false
		}
	}
	if len(rest) > 1 {
		req.name = rest[1]
	}
	if len(rest) > 2 {
		req.subresource = rest[2]
	}
	if len(rest) > 3 {
		// Only proxy takes a path after the subresource.
		if req.subresource != "proxy" {
			return nil, false
		}
		req.proxyPath = strings.Join(rest[3:], "/")
	}
	if req.ep.res.Namespaced && req.namespace == "" && req.name != "" {
		return nil, false
	}
	req.verb = verbFor(method, req.name != "", isTrue(watchParam))
	return req, true
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// writeError answers with a Kubernetes Status.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var st metav1.Status
	if se, ok := err.(apierrors.APIStatus); ok {
		st = se.Status()
	} else {
		st = apierrors.NewInternalError(err).Status()
		slog.Error("internal error", "path", r.URL.Path, "err", err)
	}
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	noteStatus(r, &st)
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	choice, ok := negotiate(r, nil)
	if !ok {
		choice.info = jsonInfo
		choice.contentType = "application/json"
	}
	s.encode(w, code, choice, &st)
}

// encode writes obj, whose TypeMeta must be set, in the chosen encoding.
func (s *Server) encode(w http.ResponseWriter, code int, choice mediaChoice, obj runtime.Object) {
	var buf bytes.Buffer
	if err := choice.info.Serializer.Encode(obj, &buf); err != nil {
		slog.Error("encoding response", "err", err)
		http.Error(w, "encoding failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", choice.contentType)
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// setKind fills TypeMeta for an object the server built itself.
func setKind(obj runtime.Object) {
	if !obj.GetObjectKind().GroupVersionKind().Empty() {
		return
	}
	kinds, _, err := Scheme.ObjectKinds(obj)
	if err == nil && len(kinds) > 0 {
		obj.GetObjectKind().SetGroupVersionKind(kinds[0])
	}
}

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	data, err := jsonMarshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(data)
}

func accessor(obj runtime.Object) metav1.Object {
	acc, err := meta.Accessor(obj)
	if err != nil {
		panic(fmt.Sprintf("object %T has no metadata: %v", obj, err))
	}
	return acc
}

// RequestTimeout is the longest a request other than a watch or a stream may
// run, as Kubernetes' --request-timeout default.
const RequestTimeout = 60 * time.Second

// requestContext is the context a request's work runs under: cancelled when
// the client goes, and past RequestTimeout, or the shorter `timeout` the
// client asked for.
func requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	d := RequestTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		if t, err := time.ParseDuration(v); err == nil && t > 0 && t < d {
			d = t
		}
	}
	return context.WithTimeout(r.Context(), d)
}

// verbFor is the API verb of a resource request, as Kubernetes' request
// info derives it: GET is get, list or watch, DELETE of a collection
// deletecollection, and so on.
func verbFor(method string, named, watch bool) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		switch {
		case named:
			return "get"
		case watch:
			return "watch"
		default:
			return "list"
		}
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		if named {
			return "delete"
		}
		return "deletecollection"
	}
	return strings.ToLower(method)
}

// isTrue parses a boolean query parameter as Kubernetes does (strconv.ParseBool).
func isTrue(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}
