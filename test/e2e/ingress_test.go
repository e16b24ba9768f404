package e2e

import (
	"context"
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/topology"
)

// testIngress is TestMultiNode's Ingress part: from a client namespace
// outside the nodes, two hosts and three paths to three Deployments (Host
// and SNI as curl --resolve sends them, to a node on the client's segment
// and to one across the router), TLS from a Secret and its rotation, a
// backend pod deleted in the middle of a stream of requests, a WebSocket, a
// missing Service, an Ingress edited and deleted, the status addresses and
// the node's metrics.
func testIngress(t *testing.T, ctx context.Context, m *cluster.Multi, outside topology.Host) {
	cs := m.Clientset()
	const ns = "ing"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := map[string]int32{"web-a": 2, "web-b": 1, "web-c": 1}
	for name, n := range replicas {
		labels := map[string]string{"app": name}
		pod := testPod("", labels)
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(n), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod.Spec}}}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name := range replicas {
		kubectl(t, m.Server, "", "-n", ns, "rollout", "status", "deployment/"+name, "--timeout=120s")
	}

	cert1, key1 := selfSignedPEM(t, "shop.example")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-tls", Namespace: ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: cert1, corev1.TLSPrivateKeyKey: key1}}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	prefix := networkingv1.PathTypePrefix
	byName := func(svc string) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Name: "http"}}}
	}
	byNumber := func(svc string) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}
	}
	rules := func(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
		return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
	}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns}, Spec: networkingv1.IngressSpec{
		// No class: Petrel's is the default.
		TLS: []networkingv1.IngressTLS{{Hosts: []string{"shop.example"}, SecretName: "shop-tls"}},
		Rules: []networkingv1.IngressRule{
			rules("shop.example",
				networkingv1.HTTPIngressPath{Path: "/", PathType: &prefix, Backend: byName("web-a")},
				networkingv1.HTTPIngressPath{Path: "/api", PathType: &prefix, Backend: byNumber("web-b")},
				networkingv1.HTTPIngressPath{Path: "/missing", PathType: &prefix, Backend: byName("nope")}),
			rules("blog.example", networkingv1.HTTPIngressPath{Path: "/", PathType: &prefix, Backend: byName("web-c")}),
		}}}
	if _, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The client resolves every name to the node it asks, as curl
	// --resolve does, and trusts both certificates the test makes.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cert1)
	cert2, key2 := selfSignedPEM(t, "shop.example")
	roots.AppendCertsFromPEM(cert2)
	clientTo := func(node *cluster.MultiNode) *http.Client {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return outside.DialContext(ctx, network, net.JoinHostPort(node.Address.String(), port))
			},
			TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 4,
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 5 * time.Second}
	}
	n0, n2 := m.Nodes[0], m.Nodes[2]
	near, far := clientTo(n0), clientTo(n2)
	get := func(c *http.Client, url string) (int, string, *http.Response, error) {
		resp, err := c.Get(url)
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body)), resp, err
	}

	t.Run("Routes", func(t *testing.T) {
		for _, c := range []struct {
			client *http.Client
			url    string
			want   string
		}{
			{near, "http://shop.example/", "web-a-"},
			{near, "http://shop.example/cart/items", "web-a-"},
			{near, "http://shop.example/api/orders", "web-b-"},
			{near, "http://shop.example/apiary", "web-a-"}, // whole path elements only
			{near, "http://blog.example/", "web-c-"},
			{far, "http://blog.example/post/1", "web-c-"},
			{far, "https://shop.example/api", "web-b-"},
		} {
			poll(t, c.url, 30*time.Second, func() error {
				code, body, _, err := get(c.client, c.url)
				if err != nil || code != 200 || !strings.HasPrefix(body, c.want) {
					return fmt.Errorf("%d %q (%v), want an answer from %s*", code, body, err, c.want)
				}
				return nil
			})
		}
		code, body, _, err := get(near, "http://shop.example/missing")
		if err != nil || code != 503 || !strings.Contains(body, "service ing/nope does not exist") {
			t.Errorf("a missing Service: %d %q (%v), want 503 saying it does not exist", code, body, err)
		}
		code, body, _, err = get(near, "http://nowhere.example/")
		if err != nil || code != 404 || !strings.Contains(body, "No Ingress rule matches") {
			t.Errorf("an unknown host: %d %q (%v), want 404 saying no rule matches", code, body, err)
		}
		// HTTP/2 over TLS, chosen by ALPN.
		_, _, resp, err := get(near, "https://shop.example/")
		if err != nil || resp.ProtoMajor != 2 {
			t.Errorf("HTTPS: %v (%v), want HTTP/2", resp, err)
		}
	})

	t.Run("StatusAddressesFromTheIngressService", func(t *testing.T) {
		// The server runs with --ingress-service kube-system/petrel-ingress:
		// a LoadBalancer Service in front of the nodes' ingress, whose pool
		// address is every Ingress's status and reaches the Ingresses.
		lbIP := ""
		poll(t, "the ingress Service's address in the Ingress's status", 30*time.Second, func() error {
			svc, err := cs.CoreV1().Services("kube-system").Get(ctx, "petrel-ingress", metav1.GetOptions{})
			if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
				return fmt.Errorf("no address for the ingress Service yet (%v)", err)
			}
			lbIP = svc.Status.LoadBalancer.Ingress[0].IP
			got, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, "shop", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var ips []string
			for _, a := range got.Status.LoadBalancer.Ingress {
				ips = append(ips, a.IP)
			}
			if strings.Join(ips, ",") != lbIP {
				return fmt.Errorf("addresses %v, want the ingress Service's %s", ips, lbIP)
			}
			return nil
		})
		// Its endpoints are the nodes.
		es, err := cs.DiscoveryV1().EndpointSlices("kube-system").Get(ctx, "petrel-ingress-nodes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, e := range es.Endpoints {
			got = append(got, e.Addresses...)
		}
		for _, n := range m.Nodes {
			want = append(want, n.Address.String())
		}
		slices.Sort(got)
		slices.Sort(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("ingress Service endpoints %v, want the nodes %v", got, want)
		}
		// The outside network sends the address to n0; whichever node's
		// ingress answers routes by Host.
		if out, err := cluster.InHost(ctx, outside, "ip", "route", "add", lbIP+"/32", "via", m.Nodes[0].Address.String()); err != nil {
			t.Fatalf("route %s: %v %s", lbIP, err, out)
		}
		for _, c := range []struct{ host, want string }{{"blog.example", "web-c-"}, {"shop.example", "web-a-"}} {
			poll(t, c.host+" through the ingress Service's address", 30*time.Second, func() error {
				out, err := cluster.InHost(ctx, outside, "curl", "-s", "-m", "3", "-H", "Host: "+c.host, "http://"+lbIP+"/")
				if err != nil || !strings.HasPrefix(strings.TrimSpace(out), c.want) {
					return fmt.Errorf("answered %q (%v), want %s*", out, err, c.want)
				}
				return nil
			})
		}
	})

	t.Run("TLSFromSecretAndRotation", func(t *testing.T) {
		serial := func(pemCert []byte) string {
			b, _ := pem.Decode(pemCert)
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c.SerialNumber.String()
		}
		served := func() (string, error) {
			_, _, resp, err := get(near, "https://shop.example/")
			if err != nil {
				return "", err
			}
			return resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
		}
		poll(t, "the Secret's certificate", 30*time.Second, func() error {
			if s, err := served(); err != nil || s != serial(cert1) {
				return fmt.Errorf("serial %s (%v), want %s", s, err, serial(cert1))
			}
			return nil
		})
		upd, err := cs.CoreV1().Secrets(ns).Get(ctx, "shop-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		upd.Data = map[string][]byte{corev1.TLSCertKey: cert2, corev1.TLSPrivateKeyKey: key2}
		if _, err := cs.CoreV1().Secrets(ns).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		rotated := time.Now()
		poll(t, "the rotated certificate", 30*time.Second, func() error {
			near.Transport.(*http.Transport).CloseIdleConnections() // a new handshake each time
			if s, err := served(); err != nil || s != serial(cert2) {
				return fmt.Errorf("serial %s (%v), want %s", s, err, serial(cert2))
			}
			return nil
		})
		t.Logf("the rotated certificate was served %v after the Secret's update", time.Since(rotated).Round(time.Millisecond))
	})

	t.Run("WebSocket", func(t *testing.T) {
		d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return outside.DialContext(ctx, network, net.JoinHostPort(n0.Address.String(), "80"))
		}, HandshakeTimeout: 5 * time.Second}
		conn, _, err := d.DialContext(ctx, "ws://blog.example/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, msg := range []string{"hello", "again"} {
			_ = conn.NetConn().SetDeadline(time.Now().Add(5 * time.Second))
			if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := conn.ReadMessage()
			if err != nil || !strings.HasPrefix(string(got), "web-c-") || !strings.HasSuffix(string(got), ": "+msg) {
				t.Fatalf("echo of %q: %q (%v)", msg, got, err)
			}
		}
	})

	t.Run("BackendPodDeletedMidStream", func(t *testing.T) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web-a"})
		if err != nil || len(pods.Items) < 2 {
			t.Fatalf("web-a pods: %v (%v)", pods, err)
		}
		victim := pods.Items[0].Name
		var ok, failed atomic.Int32
		var failures sync.Map
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, body, _, err := get(near, "http://shop.example/")
				if err != nil || code != 200 {
					failed.Add(1)
					failures.Store(i, fmt.Sprintf("%d %q %v", code, body, err))
					continue
				}
				ok.Add(1)
			}
		}()
		time.Sleep(time.Second)
		if err := cs.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Until the Deployment has its replacement serving, and a little more.
		kubectl(t, m.Server, "", "-n", ns, "rollout", "status", "deployment/web-a", "--timeout=60s")
		time.Sleep(2 * time.Second)
		close(stop)
		<-done
		if failed.Load() > 1 {
			failures.Range(func(k, v any) bool { t.Logf("request %v: %v", k, v); return true })
			t.Errorf("%d of %d requests failed while %s went; at most the one in flight may", failed.Load(), failed.Load()+ok.Load(), victim)
		}
		t.Logf("%d requests, %d failed, while %s was deleted and replaced", ok.Load()+failed.Load(), failed.Load(), victim)
	})

	t.Run("EditedAndDeleted", func(t *testing.T) {
		cur, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Spec.Rules[1].HTTP.Paths[0].Backend = byName("web-b")
		if _, err := cs.NetworkingV1().Ingresses(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		edited := time.Now()
		poll(t, "blog.example routed to web-b after the edit", 30*time.Second, func() error {
			if code, body, _, err := get(near, "http://blog.example/"); err != nil || code != 200 || !strings.HasPrefix(body, "web-b-") {
				return fmt.Errorf("%d %q (%v)", code, body, err)
			}
			return nil
		})
		t.Logf("the edit routed requests after %v", time.Since(edited).Round(time.Millisecond))
		if err := cs.NetworkingV1().Ingresses(ns).Delete(ctx, "shop", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		poll(t, "404 after the delete", 30*time.Second, func() error {
			if code, body, _, err := get(near, "http://shop.example/"); err != nil || code != 404 {
				return fmt.Errorf("%d %q (%v)", code, body, err)
			}
			return nil
		})
		t.Logf("the delete took effect after %v", time.Since(deleted).Round(time.Millisecond))
	})

	t.Run("Metrics", func(t *testing.T) {
		out, err := n0.Exec(ctx, "curl", "-s", "-m", "5", fmt.Sprintf("http://%s:%d/metrics", n0.Address, topology.MetricsPort))
		if err != nil {
			t.Fatalf("metrics of %s: %v", n0.Name, err)
		}
		want := `petrel_ingress_requests_total{host="shop.example",ingress="shop",namespace="ing",path="/",status="2xx"}`
		if !strings.Contains(out, want) {
			t.Errorf("%s's /metrics has no %s", n0.Name, want)
		}
		if !strings.Contains(out, `petrel_ingress_request_duration_seconds_bucket{host="blog.example",ingress="shop",namespace="ing",path="/"`) {
			t.Errorf("%s's /metrics has no latency histogram for blog.example", n0.Name)
		}
	})
}

// selfSignedPEM is a certificate for name that is its own root.
func selfSignedPEM(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
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
