package aggregator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/admission"
)

// issue makes a certificate signed by parent (self-signed when nil).
func issue(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool, dns []string, usage x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true, DNSNames: dns}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func tlsCert(c *x509.Certificate, k *ecdsa.PrivateKey) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k, Leaf: c}
}

// TestProxy sends a request through an APIService to a TLS server that
// checks what an aggregated server built on k8s.io/apiserver checks: its
// certificate is verified against caBundle under the Service's DNS name,
// and the front-proxy client certificate and headers carry the user, the
// user's own credentials dropped.
func TestProxy(t *testing.T) {
	ca, caKey, caPEM := issue(t, "aggregated-ca", nil, nil, true, nil, 0)
	srvCert, srvKey, _ := issue(t, "api", ca, caKey, false, []string{"api.ns.svc"}, x509.ExtKeyUsageServerAuth)
	proxyCA, proxyCAKey, _ := issue(t, "front-proxy-ca", nil, nil, true, nil, 0)
	clientCert, clientKey, _ := issue(t, ProxyClientName, proxyCA, proxyCAKey, false, nil, x509.ExtKeyUsageClientAuth)

	clients := x509.NewCertPool()
	clients.AddCert(proxyCA)
	var got http.Header
	var peer string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		if len(r.TLS.PeerCertificates) > 0 {
			peer = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		_, _ = io.WriteString(w, "hello from "+r.URL.Path)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{tlsCert(srvCert, srvKey)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
	srv.StartTLS()
	defer srv.Close()
	_, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)

	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = svcs.Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}})
	slices := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = slices.Add(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "api-1", Namespace: "ns", Labels: map[string]string{discoveryv1.LabelServiceName: "api"}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port))}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			// Not ready: never chosen.
			{Addresses: []string{"203.0.113.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		}})
	a := New(tlsCert(clientCert, clientKey))
	a.services, a.slices = corelisters.NewServiceLister(svcs), discoverylisters.NewEndpointSliceLister(slices)
	svc := &apiregistrationv1.APIService{ObjectMeta: metav1.ObjectMeta{Name: "v1.example.com"}, Spec: apiregistrationv1.APIServiceSpec{
		Group: "example.com", Version: "v1", CABundle: caPEM, Service: &apiregistrationv1.ServiceReference{Namespace: "ns", Name: "api", Port: ptr.To[int32](443)}}}
	gv := schema.GroupVersion{Group: "example.com", Version: "v1"}
	a.remote[gv] = svc

	if a.Handler(schema.GroupVersion{Group: "other.com", Version: "v1"}) != nil {
		t.Error("a group version without an APIService is proxied")
	}
	req := httptest.NewRequest(http.MethodGet, "/apis/example.com/v1/things?limit=1", nil)
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Set("X-Remote-User", "forged")
	req.Header.Set("Impersonate-User", "forged")
	req = req.WithContext(admission.WithUser(req.Context(), admission.User{Name: "alice", UID: "u-1", Groups: []string{"dev", "system:authenticated"}}))
	rec := httptest.NewRecorder()
	a.Handler(gv).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != "hello from /apis/example.com/v1/things" {
		t.Fatalf("proxied: %d %q", rec.Code, rec.Body.String())
	}
	if peer != ProxyClientName {
		t.Errorf("client certificate %q", peer)
	}
	if got.Get("Authorization") != "" || got.Get("Impersonate-User") != "" {
		t.Errorf("credentials passed on: %v", got)
	}
	if got.Get(HeaderUser) != "alice" || got.Get(HeaderUID) != "u-1" || strings.Join(got.Values(HeaderGroup), ",") != "dev,system:authenticated" {
		t.Errorf("identity headers %v", got)
	}

	// A CA bundle that did not sign the server: 503, nothing served.
	_, _, otherPEM := issue(t, "other-ca", nil, nil, true, nil, 0)
	bad := svc.DeepCopy()
	bad.Spec.CABundle = otherPEM
	a.remote[gv] = bad
	got = nil
	rec = httptest.NewRecorder()
	a.Handler(gv).ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || got != nil {
		t.Errorf("untrusted server: %d %s", rec.Code, rec.Body.String())
	}
	// Unless the APIService skips the check.
	bad.Spec.CABundle, bad.Spec.InsecureSkipTLSVerify = nil, true
	rec = httptest.NewRecorder()
	a.Handler(gv).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("insecureSkipTLSVerify: %d %s", rec.Code, rec.Body.String())
	}
	// No ready endpoint: 503 with the reason.
	_ = slices.Delete(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "api-1", Namespace: "ns"}})
	rec = httptest.NewRecorder()
	a.Handler(gv).ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "no addresses") {
		t.Errorf("no endpoints: %d %s", rec.Code, rec.Body.String())
	}
}

// A group version whose document lists only subresources (a custom metrics
// adapter's "pods/requests_per_second") is still in discovery, under a
// stand-in for the resource, read-only.
func TestSubresourcesWithoutTheirResource(t *testing.T) {
	gv := schema.GroupVersion{Group: "custom.metrics.k8s.io", Version: "v1beta2"}
	doc := &metav1.APIResourceList{GroupVersion: gv.String(), APIResources: []metav1.APIResource{
		{Name: "pods/requests_per_second", Namespaced: true, Kind: "MetricValueList", Verbs: []string{"get"}},
		{Name: "pods/queue_length", Namespaced: true, Kind: "MetricValueList", Verbs: []string{"get"}},
		{Name: "namespaces/requests_per_second", Namespaced: false, Kind: "MetricValueList", Verbs: []string{"get"}},
	}}
	res := toResources(gv, doc)
	if len(res) != 2 {
		t.Fatalf("%d resources, want pods and namespaces", len(res))
	}
	for _, r := range res {
		if r.GVR.GroupVersion() != gv || len(r.Verbs) != 1 || r.Verbs[0] != "get" {
			t.Errorf("%s: verbs %v", r.GVR, r.Verbs)
		}
		if r.GVR.Resource == "pods" && (len(r.Subresources) != 2 || !r.Namespaced) {
			t.Errorf("pods: subresources %v, namespaced %v", r.Subresources, r.Namespaced)
		}
	}
}
