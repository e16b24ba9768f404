package etcd

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func startTest(t *testing.T, dir string) (*Backend, Config) {
	t.Helper()
	p := freePorts(t, 2)
	cfg := Config{DataDir: dir, ClientURL: fmt.Sprintf("https://127.0.0.1:%d", p[0]), PeerURL: fmt.Sprintf("https://127.0.0.1:%d", p[1])}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, cfg
}

// get reads key through a gRPC client of the member's client port.
func get(endpoint string, tlsConfig *tls.Config, key string) (string, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsConfig, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// TestEmbeddedEtcdRefusesClientsWithoutCertificate: as any local user could,
// a client without a certificate from the etcd CA reads nothing on the client
// port, and gets no TLS session on the peer port; the server's own client
// certificate reads.
func TestEmbeddedEtcdRefusesClientsWithoutCertificate(t *testing.T) {
	dir := t.TempDir()
	b, cfg := startTest(t, dir)
	ctx := context.Background()
	if _, err := b.Client.Put(ctx, "/registry/secrets/default/s", "plaintext-secret"); err != nil {
		t.Fatal(err)
	}
	endpoint := strings.TrimPrefix(cfg.ClientURL, "https://")
	pkiDir := PKIDir(dir)
	caOnly, err := (transport.TLSInfo{TrustedCAFile: filepath.Join(pkiDir, "ca.crt")}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := get(endpoint, nil, "/registry/secrets/default/s"); err == nil {
		t.Errorf("plaintext client read %q", v)
	}
	if v, err := get(endpoint, caOnly, "/registry/secrets/default/s"); err == nil {
		t.Errorf("TLS client without a certificate read %q", v)
	}
	withCert, err := (transport.TLSInfo{TrustedCAFile: filepath.Join(pkiDir, "ca.crt"),
		CertFile: filepath.Join(pkiDir, "client.crt"), KeyFile: filepath.Join(pkiDir, "client.key")}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := get(endpoint, withCert, "/registry/secrets/default/s"); err != nil || v != "plaintext-secret" {
		t.Errorf("the server's client certificate read %q (%v)", v, err)
	}
	peer, _ := url.Parse(cfg.PeerURL)
	for name, tc := range map[string]*tls.Config{"no certificate": caOnly} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", peer.Host, tc)
		if err == nil {
			// TLS 1.3 reports the missing certificate on the first read.
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			_, err = conn.Write([]byte("GET /members HTTP/1.1\r\nHost: x\r\n\r\n"))
			if err == nil {
				_, err = conn.Read(make([]byte, 1))
			}
			conn.Close()
		}
		if err == nil {
			t.Errorf("peer port accepted a client with %s", name)
		}
	}
}

func TestEmbeddedEtcdTakesOnlyHTTPSURLs(t *testing.T) {
	_, err := Start(context.Background(), Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "TLS only") {
		t.Fatalf("Start with an http client URL: %v", err)
	}
}

// TestPlaintextDataDirUpgrades: a data dir written by the plaintext etcd of
// earlier releases keeps its data, and its member now advertises TLS.
func TestPlaintextDataDirUpgrades(t *testing.T) {
	dir := t.TempDir()
	p := freePorts(t, 2)
	old := embed.NewConfig()
	old.Name, old.Dir, old.LogLevel = "petrel", filepath.Join(dir, "etcd"), "error"
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", p[0]))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", p[1]))
	old.ListenClientUrls, old.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	old.ListenPeerUrls, old.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	old.InitialCluster = old.InitialClusterFromName(old.Name)
	e, err := embed.StartEtcd(old)
	if err != nil {
		t.Fatal(err)
	}
	<-e.Server.ReadyNotify()
	if v, err := get(cu.Host, nil, "/x"); err != nil || v != "" {
		t.Fatalf("old etcd: %q %v", v, err)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(context.Background(), "/registry/configmaps/default/kept", "v1"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	e.Close()

	b, cfg := startTest(t, dir)
	resp, err := b.Client.Get(context.Background(), "/registry/configmaps/default/kept")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
		t.Fatalf("after the upgrade: %v %v", resp, err)
	}
	members, err := b.Client.MemberList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(members.Members) != 1 || len(members.Members[0].PeerURLs) != 1 || members.Members[0].PeerURLs[0] != cfg.PeerURL {
		t.Fatalf("member after the upgrade: %+v, want peer URL %s", members.Members, cfg.PeerURL)
	}
}
