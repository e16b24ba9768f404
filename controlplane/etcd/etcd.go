// Package etcd gives the control plane its etcd client: an embedded single-member
// etcd under the data dir by default, or a client of an external cluster.
package etcd

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
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
}

// Backend is a running etcd connection and whatever must be closed with it.
type Backend struct {
	Client   *clientv3.Client
	embedded *embed.Etcd
	// Endpoints are the client URLs in use.
	Endpoints []string
}

// Start starts the embedded etcd (when no endpoints are given) and connects a client.
func Start(ctx context.Context, cfg Config) (*Backend, error) {
	b := &Backend{Endpoints: cfg.Endpoints}
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
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   b.Endpoints,
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
	ec.Name = "petrel"
	ec.Dir = filepath.Join(cfg.DataDir, "etcd")
	ec.LogLevel = "error"
	ec.Logger = "zap"
	clientURL, peerURL := cfg.ClientURL, cfg.PeerURL
	if clientURL == "" {
		clientURL = "http://127.0.0.1:2379"
	}
	if peerURL == "" {
		peerURL = "http://127.0.0.1:2380"
	}
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd client URL: %w", err)
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL: %w", err)
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	// Keep about an hour of history for watches that resume, then compact.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	ec.QuotaBackendBytes = 8 << 30
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s (is another etcd using %s?): %w", ec.Dir, clientURL, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		slog.Info("embedded etcd ready", "dir", ec.Dir, "client", clientURL)
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
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
