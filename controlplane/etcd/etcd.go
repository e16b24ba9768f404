// Package etcd gives the control plane its etcd client: an embedded single-member
// etcd under the data dir by default, or a client of an external cluster.
//
// The embedded etcd is closed to everyone but holders of a certificate from
// its own CA (<data-dir>/pki/etcd, made at first start, as k3s does): its
// client and peer ports serve TLS and ask for a client certificate, so a local
// user who reaches 127.0.0.1:2379 can neither read Secrets nor write
// bindings there. The server itself talks to its member in-process.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"

	"github.com/petrel-project/petrel/controlplane/pki"
)

// Config chooses between the embedded etcd and an external one.
type Config struct {
	// Endpoints of an external etcd cluster; empty means embedded.
	Endpoints []string
	// DataDir holds the embedded member's data (<data-dir>/etcd).
	DataDir string
	// ClientURL is where the embedded etcd listens for clients; empty picks
	// 127.0.0.1:2379.
	ClientURL string
	// PeerURL is where the embedded etcd listens for peers; empty picks 127.0.0.1:2380.
	PeerURL string
	// CAFile, CertFile and KeyFile authenticate this server to an external
	// etcd (its CA, and a client certificate and key); empty: plaintext.
	CAFile, CertFile, KeyFile string
	// Name is the embedded member's name; empty: "petrel", the name of the
	// first server's member (and of every data dir made before servers joined).
	Name string
	// InitialCluster ("name=peerURL,...") makes a new embedded member join
	// an existing cluster that already lists it (MemberAdd); empty starts a
	// cluster of its own. A member with data ignores it.
	InitialCluster string
}

// The embedded member's default URLs.
const (
	DefaultClientURL = "https://127.0.0.1:2379"
	DefaultPeerURL   = "https://127.0.0.1:2380"
)

// DefaultMemberName names the first server's embedded member.
const DefaultMemberName = "petrel"

// PKIDir is where the embedded etcd's CA and certificates live.
func PKIDir(dataDir string) string { return filepath.Join(dataDir, "pki", "etcd") }

// Backend is a running etcd connection and whatever must be closed with it.
type Backend struct {
	Client   *clientv3.Client
	embedded *embed.Etcd
	dataDir  string
	// Endpoints are the client URLs in use.
	Endpoints []string
}

// Start starts the embedded etcd (when no endpoints are given) and connects a client.
func Start(ctx context.Context, cfg Config) (*Backend, error) {
	b := &Backend{Endpoints: cfg.Endpoints, dataDir: cfg.DataDir}
	if len(cfg.Endpoints) == 0 {
		e, err := startEmbedded(ctx, cfg)
		if err != nil {
			return nil, err
		}
		b.embedded = e
		for _, u := range e.Config().ListenClientUrls {
			b.Endpoints = append(b.Endpoints, u.String())
		}
	}
	if b.embedded != nil {
		// The embedded member is served in-process: no gRPC over loopback, no
		// marshalling of requests, less CPU per write.
		b.Client = v3client.New(b.embedded.Server)
		return b, nil
	}
	var tlsConfig *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		var err error
		if tlsConfig, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd client TLS (--etcd-cafile, --etcd-certfile, --etcd-keyfile): %w", err)
		}
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   b.Endpoints,
		TLS:         tlsConfig,
		DialTimeout: 10 * time.Second,
		Context:     ctx,
		Logger:      zap.NewNop(),
		// Large lists (10k pods) exceed gRPC's 4 MiB default.
		MaxCallRecvMsgSize: 512 << 20,
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("connecting to etcd at %v: %w", b.Endpoints, err)
	}
	b.Client = client
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := client.Get(cctx, "/registry/\x00health"); err != nil {
		b.Close()
		return nil, fmt.Errorf("etcd at %v does not answer (is it running? check --etcd-endpoints): %w", b.Endpoints, err)
	}
	return b, nil
}

func startEmbedded(ctx context.Context, cfg Config) (*embed.Etcd, error) {
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	if ec.Name == "" {
		ec.Name = DefaultMemberName
	}
	ec.Dir = filepath.Join(cfg.DataDir, "etcd")
	ec.LogLevel = "error"
	ec.Logger = "zap"
	clientURL, peerURL := cfg.ClientURL, cfg.PeerURL
	if clientURL == "" {
		clientURL = DefaultClientURL
	}
	if peerURL == "" {
		peerURL = DefaultPeerURL
	}
	cu, err := tlsURL("--etcd-client-url", clientURL)
	if err != nil {
		return nil, err
	}
	pu, err := tlsURL("--etcd-peer-url", peerURL)
	if err != nil {
		return nil, err
	}
	if ec.ClientTLSInfo, ec.PeerTLSInfo, err = ensureTLS(PKIDir(cfg.DataDir), cu, pu); err != nil {
		return nil, err
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	if cfg.InitialCluster != "" {
		ec.InitialCluster, ec.ClusterState = cfg.InitialCluster, embed.ClusterStateFlagExisting
	}
	// Compact about as often as kube-apiserver does (every 5 minutes, to
	// the revision of the tick before): clients that resume a watch or a
	// paged list from older than that get 410 Gone and list again, as they
	// would against Kubernetes, and etcd's history stays small. 4 minutes,
	// so that a revision is gone within 8 (Kubernetes' clients, and its
	// conformance suite, wait up to two 5-minute intervals for it).
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "4m"
	ec.QuotaBackendBytes = 8 << 30
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s (is another etcd using %s?): %w", ec.Dir, clientURL, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		slog.Info("embedded etcd ready", "dir", ec.Dir, "client", clientURL)
		if err := advertiseTLSPeer(ctx, e, pu); err != nil {
			e.Close()
			return nil, err
		}
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		if cfg.InitialCluster != "" {
			return nil, fmt.Errorf("embedded etcd in %s not ready after 60s: it joins %s; are the other members running and reachable at their peer URLs?", ec.Dir, cfg.InitialCluster)
		}
		return nil, fmt.Errorf("embedded etcd in %s not ready after 60s", ec.Dir)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

// Close closes the client and stops the embedded etcd.
func (b *Backend) Close() {
	if b.Client != nil {
		_ = b.Client.Close()
	}
	if b.embedded != nil {
		b.embedded.Close()
	}
}

// tlsURL parses an embedded etcd URL, which must be https.
func tlsURL(flag, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", flag, raw, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%s %q: the embedded etcd serves TLS only, with client certificates: give https://HOST:PORT", flag, raw)
	}
	return u, nil
}

// ensureTLS makes (once) the embedded etcd's CA in dir and the member's
// certificates for its client and peer addresses, and returns the TLS
// settings of both ports: client certificates from that CA only.
func ensureTLS(dir string, client, peer *url.URL) (clientTLS, peerTLS transport.TLSInfo, err error) {
	ca, err := pki.LoadOrCreateNamedCA(dir, "petrel-etcd-ca")
	if err != nil {
		return clientTLS, peerTLS, fmt.Errorf("etcd CA in %s: %w", dir, err)
	}
	hosts := []string{"localhost", "127.0.0.1"}
	for _, u := range []*url.URL{client, peer} {
		if h := u.Hostname(); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	caFile := filepath.Join(dir, "ca.crt")
	serverCert, serverKey, err := ca.EnsurePairFor(dir, "server", "petrel-etcd", nil, hosts, both...)
	if err != nil {
		return clientTLS, peerTLS, fmt.Errorf("etcd serving certificate: %w", err)
	}
	peerCert, peerKey, err := ca.EnsurePairFor(dir, "peer", "petrel-etcd-peer", nil, hosts, both...)
	if err != nil {
		return clientTLS, peerTLS, fmt.Errorf("etcd peer certificate: %w", err)
	}
	// The server's own client certificate, for tools run by its operator
	// (etcdctl --cacert ca.crt --cert client.crt --key client.key).
	if _, _, err := ca.EnsurePairFor(dir, "client", "petrel-apiserver", nil, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return clientTLS, peerTLS, fmt.Errorf("etcd client certificate: %w", err)
	}
	clientTLS = transport.TLSInfo{CertFile: serverCert, KeyFile: serverKey, TrustedCAFile: caFile, ClientCertAuth: true}
	peerTLS = transport.TLSInfo{CertFile: peerCert, KeyFile: peerKey, TrustedCAFile: caFile, ClientCertAuth: true}
	return clientTLS, peerTLS, nil
}

// advertiseTLSPeer updates the member's peer URL when a data dir made before
// etcd was closed (plaintext) recorded an http one: the data stays, and the
// membership says what the member now serves.
func advertiseTLSPeer(ctx context.Context, e *embed.Etcd, peer *url.URL) error {
	client := v3client.New(e.Server)
	defer client.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	members, err := client.MemberList(cctx)
	if err != nil {
		return fmt.Errorf("etcd member list: %w", err)
	}
	id := uint64(e.Server.MemberID())
	for _, m := range members.Members {
		if m.ID == id && !slices.Equal(m.PeerURLs, []string{peer.String()}) {
			slog.Info("embedded etcd: peer URL now TLS", "was", m.PeerURLs, "now", peer.String())
			if _, err := client.MemberUpdate(cctx, id, []string{peer.String()}); err != nil {
				return fmt.Errorf("etcd member update to %s: %w", peer, err)
			}
		}
	}
	return nil
}
