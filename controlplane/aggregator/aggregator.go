// Package aggregator is API aggregation: APIServices with a service hand
// their group version to another API server, which the API server reaches
// through one of the Service's ready endpoints over TLS (checked against
// the APIService's caBundle unless insecureSkipTLSVerify), sending the
// authenticated user in the front-proxy headers (X-Remote-User,
// X-Remote-Group, X-Remote-Extra-*) with a client certificate the
// aggregated server trusts through kube-system/extension-apiserver-authentication.
// It also fetches each available group version's resource list for
// discovery and keeps the APIServices' Available condition current.
package aggregator

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregatorclient "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"
	aggregatorinformers "k8s.io/kube-aggregator/pkg/client/informers/externalversions"
	apiservicelisters "k8s.io/kube-aggregator/pkg/client/listers/apiregistration/v1"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry"
)

// ProxyClientName is the common name of the API server's front-proxy
// client certificate: the one name extension-apiserver-authentication
// allows to assert users in headers.
const ProxyClientName = "front-proxy-client"

// Header names of the front proxy, as Kubernetes sends them.
const (
	HeaderUser        = "X-Remote-User"
	HeaderUID         = "X-Remote-Uid"
	HeaderGroup       = "X-Remote-Group"
	HeaderExtraPrefix = "X-Remote-Extra-"
)

// checkPeriod is how often availability and discovery are refreshed without
// an event.
const checkPeriod = 10 * time.Second

// Aggregator proxies aggregated group versions.
type Aggregator struct {
	client      kubernetes.Interface
	aggClient   aggregatorclient.Interface
	services    corelisters.ServiceLister
	slices      discoverylisters.EndpointSliceLister
	apiservices apiservicelisters.APIServiceLister
	clientCert  tls.Certificate
	kick        chan struct{}

	mu        sync.RWMutex
	onChange  []func()
	remote    map[schema.GroupVersion]*apiregistrationv1.APIService
	resources []*registry.Resource
	docs      map[schema.GroupVersion]*metav1.APIResourceList
	// transports are kept per APIService version, so proxied requests
	// reuse connections.
	transports map[string]*http.Transport
}

// New makes an aggregator that reaches aggregated servers with
// clientCert; Start connects it to the API.
func New(clientCert tls.Certificate) *Aggregator {
	return &Aggregator{clientCert: clientCert, kick: make(chan struct{}, 1),
		remote: map[schema.GroupVersion]*apiregistrationv1.APIService{}, docs: map[schema.GroupVersion]*metav1.APIResourceList{}}
}

// OnChange registers fn to run when the aggregated group versions change
// (the API server rebuilds its discovery).
func (a *Aggregator) OnChange(fn func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onChange = append(a.onChange, fn)
}

// Start reads APIServices, Services and EndpointSlices through informers
// of its own and checks them until ctx ends; writeStatus says whether this
// server keeps the Available conditions now (the leader does).
func (a *Aggregator) Start(ctx context.Context, cs kubernetes.Interface, ac aggregatorclient.Interface, writeStatus func() bool) {
	a.client, a.aggClient = cs, ac
	factory := informers.NewSharedInformerFactory(cs, 0)
	aggFactory := aggregatorinformers.NewSharedInformerFactory(ac, 0)
	a.services = factory.Core().V1().Services().Lister()
	a.slices = factory.Discovery().V1().EndpointSlices().Lister()
	inf := aggFactory.Apiregistration().V1().APIServices()
	a.apiservices = inf.Lister()
	kick := func(interface{}) {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(_, o interface{}) { kick(o) }, DeleteFunc: kick})
	factory.Start(ctx.Done())
	aggFactory.Start(ctx.Done())
	go func() {
		factory.WaitForCacheSync(ctx.Done())
		aggFactory.WaitForCacheSync(ctx.Done())
		t := time.NewTicker(checkPeriod)
		defer t.Stop()
		for {
			a.check(ctx, writeStatus != nil && writeStatus())
			select {
			case <-ctx.Done():
				return
			case <-a.kick:
			case <-t.C:
			}
		}
	}()
}

// Handler is the proxy of a group version served elsewhere, nil when this
// server serves it (no APIService, or a Local one).
func (a *Aggregator) Handler(gv schema.GroupVersion) http.Handler {
	a.mu.RLock()
	svc := a.remote[gv]
	a.mu.RUnlock()
	if svc == nil {
		return nil
	}
	return &proxy{a: a, svc: svc}
}

// Resources are the aggregated group versions' resources, for discovery.
func (a *Aggregator) Resources() []*registry.Resource {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.resources
}

// check rebuilds the remote table, fetches discovery of the available
// ones and, when asked, writes the Available conditions.
func (a *Aggregator) check(ctx context.Context, writeStatus bool) {
	list, err := a.apiservices.List(labels.Everything())
	if err != nil {
		return
	}
	remote := map[schema.GroupVersion]*apiregistrationv1.APIService{}
	docs := map[schema.GroupVersion]*metav1.APIResourceList{}
	for _, svc := range list {
		gv := schema.GroupVersion{Group: svc.Spec.Group, Version: svc.Spec.Version}
		cond := apiregistrationv1.APIServiceCondition{Type: apiregistrationv1.Available, Status: apiregistrationv1.ConditionTrue,
			Reason: "Local", Message: "Local APIServices are always available"}
		if svc.Spec.Service != nil {
			remote[gv] = svc
			doc, err := a.discover(ctx, svc)
			switch {
			case err != nil:
				var ce *checkError
				if errors.As(err, &ce) {
					cond.Status, cond.Reason, cond.Message = apiregistrationv1.ConditionFalse, ce.reason, ce.msg
				} else {
					cond.Status, cond.Reason, cond.Message = apiregistrationv1.ConditionFalse, "FailedDiscoveryCheck", err.Error()
				}
			default:
				cond.Reason, cond.Message = "Passed", "all checks passed"
				docs[gv] = doc
			}
		}
		if writeStatus {
			a.writeCondition(ctx, svc, cond)
		}
	}
	var resources []*registry.Resource
	gvs := make([]schema.GroupVersion, 0, len(docs))
	for gv := range docs {
		gvs = append(gvs, gv)
	}
	sort.Slice(gvs, func(i, j int) bool { return gvs[i].String() < gvs[j].String() })
	for _, gv := range gvs {
		resources = append(resources, toResources(gv, docs[gv])...)
	}
	a.mu.Lock()
	changed := !reflect.DeepEqual(keys(a.remote), keys(remote)) || !reflect.DeepEqual(a.docs, docs)
	a.remote, a.docs, a.resources = remote, docs, resources
	fns := append([]func(){}, a.onChange...)
	a.mu.Unlock()
	if changed {
		for _, fn := range fns {
			fn()
		}
	}
}

func keys(m map[schema.GroupVersion]*apiregistrationv1.APIService) map[schema.GroupVersion]string {
	out := map[schema.GroupVersion]string{}
	for k, v := range m {
		out[k] = v.ResourceVersion
	}
	return out
}

// writeCondition sets the Available condition when it differs, keeping
// its transition time while the status holds.
func (a *Aggregator) writeCondition(ctx context.Context, svc *apiregistrationv1.APIService, cond apiregistrationv1.APIServiceCondition) {
	out := svc.DeepCopy()
	found := false
	for i := range out.Status.Conditions {
		c := &out.Status.Conditions[i]
		if c.Type != cond.Type {
			continue
		}
		found = true
		if c.Status == cond.Status && c.Reason == cond.Reason && c.Message == cond.Message {
			return
		}
		if c.Status != cond.Status {
			c.LastTransitionTime = metav1.Now()
		}
		c.Status, c.Reason, c.Message = cond.Status, cond.Reason, cond.Message
	}
	if !found {
		cond.LastTransitionTime = metav1.Now()
		out.Status.Conditions = append(out.Status.Conditions, cond)
	}
	if _, err := a.aggClient.ApiregistrationV1().APIServices().UpdateStatus(ctx, out, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		slog.Warn("aggregator: APIService status", "apiservice", svc.Name, "err", err)
	}
}

// checkError is an availability failure with its condition reason.
type checkError struct{ reason, msg string }

func (e *checkError) Error() string { return e.msg }

// endpoint is a ready address of the APIService's Service for its port.
func (a *Aggregator) endpoint(svc *apiregistrationv1.APIService) (string, error) {
	ref := svc.Spec.Service
	port := int32(443)
	if ref.Port != nil {
		port = *ref.Port
	}
	s, err := a.services.Services(ref.Namespace).Get(ref.Name)
	if err != nil {
		return "", &checkError{"ServiceNotFound", fmt.Sprintf("service/%s in %q is not present", ref.Name, ref.Namespace)}
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return net.JoinHostPort(s.Spec.ExternalName, strconv.Itoa(int(port))), nil
	}
	var sp *corev1.ServicePort
	for i := range s.Spec.Ports {
		if s.Spec.Ports[i].Port == port {
			sp = &s.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", &checkError{"ServicePortError", fmt.Sprintf("service/%s in %q is not listening on port %d", ref.Name, ref.Namespace, port)}
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: ref.Name})
	slices, _ := a.slices.EndpointSlices(ref.Namespace).List(sel)
	var ready []string
	for _, sl := range slices {
		for _, p := range sl.Ports {
			if p.Port == nil || ptrStr(p.Name) != sp.Name {
				continue
			}
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				for _, addr := range ep.Addresses {
					ready = append(ready, net.JoinHostPort(addr, strconv.Itoa(int(*p.Port))))
				}
			}
		}
	}
	if len(ready) == 0 {
		return "", &checkError{"MissingEndpoints", fmt.Sprintf("endpoints for service/%s in %q have no addresses with port name %q", ref.Name, ref.Namespace, sp.Name)}
	}
	sort.Strings(ready)
	return ready[rand.IntN(len(ready))], nil
}

func ptrStr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// transport is how the APIService's server is reached: its CA bundle (or
// no check when it says so), the Service's DNS name, the front-proxy
// client certificate. One is kept per APIService version.
func (a *Aggregator) transport(svc *apiregistrationv1.APIService) (*http.Transport, error) {
	key := svc.Name + "/" + svc.ResourceVersion + "/" + string(svc.UID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if tr := a.transports[key]; tr != nil && svc.ResourceVersion != "" {
		return tr, nil
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{a.clientCert}, MinVersion: tls.VersionTLS12,
		ServerName: svc.Spec.Service.Name + "." + svc.Spec.Service.Namespace + ".svc"}
	if svc.Spec.InsecureSkipTLSVerify {
		cfg.InsecureSkipVerify = true //nolint:gosec // the APIService asks for it, as in Kubernetes
	} else {
		pool := x509.NewCertPool()
		if len(svc.Spec.CABundle) > 0 && !pool.AppendCertsFromPEM(svc.Spec.CABundle) {
			return nil, &checkError{"FailedDiscoveryCheck", "spec.caBundle holds no PEM certificate"}
		}
		cfg.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: cfg, Proxy: nil, TLSHandshakeTimeout: 10 * time.Second, IdleConnTimeout: 90 * time.Second,
		ForceAttemptHTTP2: true}
	if a.transports == nil {
		a.transports = map[string]*http.Transport{}
	}
	// Older versions of this APIService go.
	for k, old := range a.transports {
		if strings.HasPrefix(k, svc.Name+"/") {
			old.CloseIdleConnections()
			delete(a.transports, k)
		}
	}
	if svc.ResourceVersion != "" {
		a.transports[key] = tr
	}
	return tr, nil
}

// discover asks the server for its group version's resource list, as the
// aggregator's availability check does, as system:kube-aggregator.
func (a *Aggregator) discover(ctx context.Context, svc *apiregistrationv1.APIService) (*metav1.APIResourceList, error) {
	addr, err := a.endpoint(svc)
	if err != nil {
		return nil, err
	}
	tr, err := a.transport(svc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u := "https://" + addr + "/apis/" + svc.Spec.Group + "/" + svc.Spec.Version
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(HeaderUser, "system:kube-aggregator")
	req.Header.Add(HeaderGroup, "system:masters")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, &checkError{"FailedDiscoveryCheck", fmt.Sprintf("failing or missing response from %s: %v", u, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, &checkError{"FailedDiscoveryCheck", fmt.Sprintf("failing or missing response from %s: bad status from %s: %d", u, u, resp.StatusCode)}
	}
	doc := &metav1.APIResourceList{}
	if err := json.Unmarshal(body, doc); err != nil {
		return nil, &checkError{"FailedDiscoveryCheck", fmt.Sprintf("unreadable discovery from %s: %v", u, err)}
	}
	return doc, nil
}

// toResources turns a resource list into the entries discovery lists.
func toResources(gv schema.GroupVersion, doc *metav1.APIResourceList) []*registry.Resource {
	var out []*registry.Resource
	listed := map[string]bool{}
	for _, r := range doc.APIResources {
		listed[r.Name] = true
	}
	// Subresources whose resource the document does not list (a custom
	// metrics adapter lists only "pods/requests_per_second") hang under a
	// stand-in for it, as Kubernetes' aggregated discovery does: dropped,
	// such a group version was missing from /apis altogether, and clients
	// that find their API by discovery (the HPA's custom metrics client)
	// said it was not registered.
	orphans := map[string]*registry.Resource{}
	for _, r := range doc.APIResources {
		parent, sub, ok := strings.Cut(r.Name, "/")
		if !ok || listed[parent] {
			continue
		}
		res := orphans[parent]
		if res == nil {
			res = &registry.Resource{GVR: gv.WithResource(parent), Kind: r.Kind, Namespaced: r.Namespaced, Singular: parent,
				Verbs: []string{"get"}, New: func() runtime.Object { return &metav1.PartialObjectMetadata{} }}
			orphans[parent] = res
			out = append(out, res)
		}
		res.Subresources = append(res.Subresources, sub)
	}
	for _, r := range doc.APIResources {
		if strings.Contains(r.Name, "/") {
			continue
		}
		singular := r.SingularName
		if singular == "" {
			singular = strings.ToLower(r.Kind)
		}
		verbs := append([]string{}, r.Verbs...)
		if len(verbs) == 0 {
			verbs = []string{"get"}
		}
		out = append(out, &registry.Resource{GVR: gv.WithResource(r.Name), Kind: r.Kind, Namespaced: r.Namespaced, Singular: singular,
			ShortNames: r.ShortNames, Categories: r.Categories, Verbs: verbs, New: func() runtime.Object { return &metav1.PartialObjectMetadata{} }})
	}
	return out
}

// proxy passes one request to the APIService's server.
type proxy struct {
	a   *Aggregator
	svc *apiregistrationv1.APIService
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, ok := admission.UserFrom(r.Context())
	if !ok {
		writeStatus(w, apierrors.NewUnauthorized("no user"))
		return
	}
	addr, err := p.a.endpoint(p.svc)
	if err != nil {
		writeStatus(w, apierrors.NewServiceUnavailable(err.Error()))
		return
	}
	tr, err := p.a.transport(p.svc)
	if err != nil {
		writeStatus(w, apierrors.NewServiceUnavailable(err.Error()))
		return
	}
	target := &url.URL{Scheme: "https", Host: addr}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = addr
			h := pr.Out.Header
			// The user's own credentials stay here; the aggregated server
			// learns who they are from the headers, trusted for our
			// client certificate only.
			h.Del("Authorization")
			for k := range h {
				lk := strings.ToLower(k)
				if strings.HasPrefix(lk, "impersonate-") || strings.HasPrefix(lk, "x-remote-") {
					h.Del(k)
				}
			}
			h.Set(HeaderUser, user.Name)
			if user.UID != "" {
				h.Set(HeaderUID, user.UID)
			}
			for _, g := range user.Groups {
				h.Add(HeaderGroup, g)
			}
			// Petrel's users carry no extra attributes yet, so no
			// X-Remote-Extra-* header is sent.
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeStatus(w, apierrors.NewServiceUnavailable(fmt.Sprintf("error trying to reach service: %v", err)))
		},
	}
	rp.ServeHTTP(w, r)
}

func writeStatus(w http.ResponseWriter, err apierrors.APIStatus) {
	st := err.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}
