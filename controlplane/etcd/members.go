package etcd

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one member of the etcd cluster.
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	// Learner: added, not yet voting.
	Learner bool
}

// Started reports whether the member has run: a member added but never
// started has no name and no client URLs yet.
func (m Member) Started() bool { return m.Name != "" }

// Embedded reports whether this server runs a member of its own.
func (b *Backend) Embedded() bool { return b.embedded != nil }

// MemberName names the embedded member of a server that joins: the host's
// name and the peer address, unique per machine and stable across restarts.
// Only "=" and "," may not appear in it (they separate the initial cluster).
func MemberName(hostname, peerURL string) (string, error) {
	u, err := tlsURL("--etcd-peer-url", peerURL)
	if err != nil {
		return "", err
	}
	return hostname + "-" + strings.NewReplacer(":", "-", "[", "", "]", "").Replace(u.Host), nil
}

// Members lists the cluster's members.
func (b *Backend) Members(ctx context.Context) ([]Member, error) {
	resp, err := b.Client.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd member list: %w", err)
	}
	return members(resp.Members), nil
}

func members(in []*etcdserverpb.Member) []Member {
	out := make([]Member, 0, len(in))
	for _, m := range in {
		out = append(out, Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner})
	}
	return out
}

// AddMember adds the member name at peerURL to the cluster of this
// server's embedded member, and returns the initial cluster
// ("name=peerURL,...") the new member starts with. Asked again for the same
// peer URL (a server that failed after the add and tries again), it adds
// nothing and answers the same.
//
// As with etcdctl member add, the cluster needs the new member to reach
// quorum again once it is added (two of two): the new member must start at
// once, and one server joins at a time (etcd refuses a second add while the
// first new member has not started).
func (b *Backend) AddMember(ctx context.Context, name, peerURL string) (string, error) {
	if b.embedded == nil {
		return "", fmt.Errorf("this server uses an external etcd (%s): a joining server gives the same --etcd-endpoints instead of an embedded member", strings.Join(b.Endpoints, ","))
	}
	if _, err := tlsURL("--etcd-peer-url", peerURL); err != nil {
		return "", err
	}
	if name == "" || strings.ContainsAny(name, "=,") {
		return "", fmt.Errorf("etcd member name %q: want a non-empty name without '=' or ','", name)
	}
	// This member's own view: right after an add, the cluster has no
	// quorum until the new member starts, and a linearizable list would
	// wait for it.
	resp, err := b.Client.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return "", fmt.Errorf("etcd member list: %w", err)
	}
	list := members(resp.Members)
	var id uint64
	for _, m := range list {
		if slices.Contains(m.PeerURLs, peerURL) {
			if m.Started() && m.Name != name {
				return "", fmt.Errorf("etcd member %s (%x) already has peer URL %s: remove it first (petrelctl etcd member remove %x) or pick another --etcd-peer-url", m.Name, m.ID, peerURL, m.ID)
			}
			id = m.ID
		}
	}
	if id == 0 {
		resp, err := b.Client.MemberAdd(ctx, []string{peerURL})
		if err != nil {
			return "", fmt.Errorf("etcd member add %s: %w", peerURL, err)
		}
		id, list = resp.Member.ID, members(resp.Members)
	}
	return initialCluster(list, id, name)
}

// initialCluster is the --initial-cluster of the member id, named name.
func initialCluster(list []Member, id uint64, name string) (string, error) {
	var parts []string
	for _, m := range list {
		n := m.Name
		if m.ID == id {
			n = name
		}
		if n == "" {
			return "", fmt.Errorf("etcd member %x (peer URL %s) was added but never started: start it, or remove it (petrelctl etcd member remove %x), before another server joins",
				m.ID, strings.Join(m.PeerURLs, ","), m.ID)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, ","), nil
}

// RemoveMember removes a member (a server that is gone for good).
func (b *Backend) RemoveMember(ctx context.Context, id uint64) error {
	if _, err := b.Client.MemberRemove(ctx, id); err != nil {
		return fmt.Errorf("etcd member remove %x: %w", id, err)
	}
	return nil
}
