// Package leader elects one leader among the API servers that share an etcd,
// on an etcd lease, so that one scheduler and one set of controllers run: the
// leader runs them until its lease is lost, a standby takes over when the
// leader dies (after the lease's TTL).
package leader

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Prefix is where elections live in etcd.
const Prefix = "/petrel/leader/"

// Config describes one election.
type Config struct {
	Client *clientv3.Client
	// Name of the election (e.g. "controllers").
	Name string
	// Identity of this candidate, shown as the leader's value.
	Identity string
	// TTL of the lease: how long a dead leader keeps the role.
	TTL time.Duration
	// OnLeading runs while this candidate leads; its context ends when the
	// lead is lost.
	OnLeading func(ctx context.Context)
	// OnChange is told whether this candidate leads (for metrics).
	OnChange func(leading bool)
}

// Run campaigns until ctx ends, running OnLeading each time it wins.
func Run(ctx context.Context, cfg Config) {
	for ctx.Err() == nil {
		if err := runOnce(ctx, cfg); err != nil && ctx.Err() == nil {
			slog.Warn("leader election: retrying", "election", cfg.Name, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func runOnce(ctx context.Context, cfg Config) error {
	ttl := int(cfg.TTL.Seconds())
	if ttl < 1 {
		ttl = 1
	}
	session, err := concurrency.NewSession(cfg.Client, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	defer session.Close()
	election := concurrency.NewElection(session, Prefix+cfg.Name)
	if err := election.Campaign(ctx, cfg.Identity); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	slog.Info("leader election: leading", "election", cfg.Name, "identity", cfg.Identity)
	if cfg.OnChange != nil {
		cfg.OnChange(true)
	}
	leadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		cfg.OnLeading(leadCtx)
	}()
	select {
	case <-session.Done():
		slog.Warn("leader election: lease lost, stepping down", "election", cfg.Name, "identity", cfg.Identity)
	case <-ctx.Done():
	}
	cancel()
	<-done
	if cfg.OnChange != nil {
		cfg.OnChange(false)
	}
	// Give the role up at once when we stop on purpose.
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	_ = election.Resign(rctx)
	return nil
}

// Leader returns the identity of the current leader of an election.
func Leader(ctx context.Context, client *clientv3.Client, name string) (string, error) {
	resp, err := client.Get(ctx, Prefix+name+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", concurrency.ErrElectionNoLeader
	}
	return string(resp.Kvs[0].Value), nil
}
