package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// fakeServices is a serviceSource of fixed Services and endpoints.
type fakeServices struct {
	svcs map[string]*corev1.Service // namespace/name
	eps  map[string][]string        // namespace/name → ip:port
}

func (f *fakeServices) service(ns, name string) *corev1.Service { return f.svcs[ns+"/"+name] }

func (f *fakeServices) endpoints(svc *corev1.Service, _ *corev1.ServicePort) []string {
	return f.eps[svc.Namespace+"/"+svc.Name]
}

func (f *fakeServices) add(ns, name string, eps ...string) {
	f.svcs[ns+"/"+name] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	f.eps[ns+"/"+name] = eps
}

func newFake() *fakeServices {
	return &fakeServices{svcs: map[string]*corev1.Service{}, eps: map[string][]string{}}
}

func path(p string, pt networkingv1.PathType, svc string) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: ptr.To(pt), Backend: networkingv1.IngressBackend{
		Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

func ingress(name string, age time.Duration, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name,
		CreationTimestamp: metav1.NewTime(time.Unix(1_000_000, 0).Add(-age))}, Spec: networkingv1.IngressSpec{Rules: rules}}
}

// The table follows the Ingress specification's matching and precedence.
func TestLookup(t *testing.T) {
	src := newFake()
	for _, s := range []string{"app", "api", "api-v2", "exact", "wild", "any", "old", "young", "default"} {
		src.add("web", s, "10.0.0.1:8080")
	}
	a := ingress("a", time.Hour,
		rule("shop.example", path("/", networkingv1.PathTypePrefix, "app"), path("/api", networkingv1.PathTypePrefix, "api"),
			path("/api/v2/", networkingv1.PathTypeImplementationSpecific, "api-v2"), path("/api", networkingv1.PathTypeExact, "exact")),
		rule("*.example", path("/", networkingv1.PathTypePrefix, "wild")),
		rule("", path("/status", networkingv1.PathTypePrefix, "any")),
		rule("same.example", path("/x", networkingv1.PathTypePrefix, "old")))
	a.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "default", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	b := ingress("b", time.Minute, rule("same.example", path("/x", networkingv1.PathTypePrefix, "young")))
	tbl := buildTable([]*networkingv1.Ingress{b, a}, src, nil)
	for _, c := range []struct{ host, path, want string }{
		{"shop.example", "/", "app"},
		{"shop.example", "/apiary", "app"}, // whole elements only
		{"shop.example", "/api/", "api"},
		{"shop.example", "/api", "exact"}, // Exact beats Prefix at equal length
		{"shop.example", "/api/users", "api"},
		{"shop.example", "/api/v2", "api-v2"}, // trailing slash of the rule ignored
		{"shop.example", "/api/v2/x", "api-v2"},
		{"a.example", "/z", "wild"},
		{"b.a.example", "/status", "any"}, // a wildcard covers one label only
		{"example", "/status", "any"},
		{"shop.example", "/status", "app"}, // the host's own rules first
		{"same.example", "/x", "old"},      // the oldest Ingress wins a tie
		{"nowhere.test", "/", "default"},
	} {
		rt := tbl.lookup(c.host, c.path)
		if rt == nil || rt.backend == nil || rt.backend.service != c.want {
			got := "<nil>"
			if rt != nil && rt.backend != nil {
				got = rt.backend.service
			}
			t.Errorf("lookup(%s, %s) = %s, want %s", c.host, c.path, got, c.want)
		}
	}
	if rt := buildTable([]*networkingv1.Ingress{b}, src, nil).lookup("other.example", "/"); rt != nil {
		t.Errorf("no rule and no default backend: got route %+v, want none (404)", rt)
	}
}

// proxyFor is a controller whose table is built from ings over src, as
// rebuild makes it, without informers.
func proxyFor(t *testing.T, src *fakeServices, ings ...*networkingv1.Ingress) *Controller {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName = "n-test"
	cfg.DialTimeout = 500 * time.Millisecond
	c, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.table.Store(buildTable(ings, src, nil))
	t.Cleanup(c.transport.CloseIdleConnections)
	return c
}

// closedPort is an address nothing listens on: connecting is refused.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestProxy(t *testing.T) {
	var lastHeaders http.Header
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastHeaders = r.Header.Clone()
		// No pooled connection: every request dials an endpoint.
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "host=%s path=%s", r.Host, r.URL.Path)
	}))
	defer backend.Close()
	src := newFake()
	// The first endpoint refuses: every request still gets through, by
	// the next one.
	src.add("web", "app", closedPort(t), backend.Listener.Addr().String())
	src.add("web", "empty")
	ing := ingress("a", time.Hour, rule("shop.example", path("/", networkingv1.PathTypePrefix, "app"),
		path("/empty", networkingv1.PathTypePrefix, "empty"), path("/gone", networkingv1.PathTypePrefix, "missing")))
	front := httptest.NewServer(proxyFor(t, src, ing))
	defer front.Close()

	get := func(host, p string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, front.URL+p, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for i := range 4 {
		code, body := get("shop.example", "/cart")
		if code != 200 || body != "host=shop.example path=/cart" {
			t.Fatalf("request %d through a refusing endpoint: %d %q", i, code, body)
		}
	}
	if got := lastHeaders.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := lastHeaders.Get("X-Forwarded-Host") + " " + lastHeaders.Get("X-Forwarded-Proto"); got != "shop.example http" {
		t.Errorf("X-Forwarded-Host, -Proto = %q", got)
	}
	for _, c := range []struct {
		host, path string
		code       int
		says       string
	}{
		{"other.example", "/", 404, "No Ingress rule matches host &#34;other.example&#34;"},
		{"shop.example", "/empty", 503, "service web/empty has no ready endpoints"},
		{"shop.example", "/gone", 503, "service web/missing does not exist"},
	} {
		code, body := get(c.host, c.path)
		if code != c.code || !strings.Contains(body, c.says) || !strings.Contains(body, "n-test") {
			t.Errorf("%s%s: %d %q, want %d saying %q and the node", c.host, c.path, code, body, c.code, c.says)
		}
	}

	m := front.Config.Handler.(*Controller).metrics
	for labels, want := range map[[5]string]float64{
		{"web", "a", "shop.example", "/", "2xx"}:      4,
		{"web", "a", "shop.example", "/empty", "5xx"}: 1,
		{"", "", "", "", "4xx"}:                       1,
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(labels[:]...)); got != want {
			t.Errorf("petrel_ingress_requests_total%v = %v, want %v", labels, got, want)
		}
	}

	// Every endpoint refuses: a 502 naming the Service.
	src.eps["web/app"] = []string{closedPort(t)}
	front.Config.Handler = proxyFor(t, src, ing)
	if code, body := get("shop.example", "/"); code != 502 || !strings.Contains(body, "web/app") {
		t.Errorf("no endpoint answering: %d %q, want 502 naming web/app", code, body)
	}
}

// A WebSocket goes through the proxy both ways.
func TestProxyWebSocket(t *testing.T) {
	up := websocket.Upgrader{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			_ = c.WriteMessage(kind, append([]byte("echo: "), msg...))
		}
	}))
	defer backend.Close()
	src := newFake()
	src.add("web", "ws", backend.Listener.Addr().String())
	front := httptest.NewServer(proxyFor(t, src, ingress("a", time.Hour, rule("", path("/", networkingv1.PathTypePrefix, "ws")))))
	defer front.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(front.URL, "http")+"/chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, m := range []string{"one", "two"} {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.ReadMessage()
		if err != nil || string(got) != "echo: "+m {
			t.Fatalf("echo of %q: %q %v", m, got, err)
		}
	}
}

// keyPair is a self-signed certificate for names, PEM-encoded.
func keyPair(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// Certificates are picked by SNI: exact host, wildcard, then the default.
func TestCertificates(t *testing.T) {
	src := newFake()
	src.add("web", "app", "10.0.0.1:80")
	ing := ingress("a", time.Hour, rule("shop.example", path("/", networkingv1.PathTypePrefix, "app")))
	ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"shop.example"}, SecretName: "shop"},
		{Hosts: []string{"*.example"}, SecretName: "wild"}, {Hosts: []string{"broken.example"}, SecretName: "broken"}}
	shopCert, shopKey := keyPair(t, "shop.example")
	wildCert, wildKey := keyPair(t, "*.example")
	secrets := map[string]*corev1.Secret{
		"shop":   {Data: map[string][]byte{corev1.TLSCertKey: shopCert, corev1.TLSPrivateKeyKey: shopKey}},
		"wild":   {Data: map[string][]byte{corev1.TLSCertKey: wildCert, corev1.TLSPrivateKeyKey: wildKey}},
		"broken": {Data: map[string][]byte{corev1.TLSCertKey: shopCert, corev1.TLSPrivateKeyKey: wildKey}},
	}
	fallback, err := selfSigned("n-test")
	if err != nil {
		t.Fatal(err)
	}
	tbl := buildTable([]*networkingv1.Ingress{ing}, src, nil)
	crt := buildCerts(tbl, func(r secretRef) *corev1.Secret { return secrets[r.name] }, fallback)
	subject := func(c *tls.Certificate) string {
		x, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return x.Subject.CommonName
	}
	for sni, want := range map[string]string{"shop.example": "shop.example", "SHOP.example.": "shop.example",
		"cart.example": "*.example", "a.b.example": "Petrel Ingress default certificate",
		"broken.example": "*.example", "": "Petrel Ingress default certificate"} {
		if got := subject(crt.pick(sni)); got != want {
			t.Errorf("SNI %q: certificate %q, want %q", sni, got, want)
		}
	}
	if why := crt.problems[secretRef{"web", "broken"}]; !strings.Contains(why, "key pair") {
		t.Errorf("a mismatched key pair is reported as %q", why)
	}
}
