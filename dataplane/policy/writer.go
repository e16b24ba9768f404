package policy

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Writer is the one writer of the policy maps. It remembers what the maps
// hold (read back from the pins when it starts, so a restarted node fixes
// only the difference) and writes each change as an ordered diff.
type Writer struct {
	maps *bpfobj.PolicyMaps
	cur  *Desired
	// retry names the keys the last write failed at.
	retry *Delta
}

// NewWriter reads what the pinned maps hold.
func NewWriter(maps *bpfobj.PolicyMaps) (*Writer, error) {
	w := &Writer{maps: maps, cur: &Desired{IPCache: map[netip.Prefix]uint32{}, CIDR: map[netip.Prefix]uint32{},
		Endpoints: map[netip.Addr]Endpoint{}, Entries: map[Entry]struct{}{}}}
	var k bpfobj.IPCacheKey
	var v bpfobj.IPCacheValue
	for _, m := range []struct {
		from *ebpf.Map
		to   map[netip.Prefix]uint32
	}{{maps.IPCache, w.cur.IPCache}, {maps.CIDR, w.cur.CIDR}} {
		it := m.from.Iterate()
		for it.Next(&k, &v) {
			m.to[bpfobj.PrefixOf(k)] = v.Identity
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("policy: read back %v: %w", m.from, err)
		}
	}
	var addr uint32
	var ep bpfobj.PolicyEndpoint
	it := maps.Endpoints.Iterate()
	for it.Next(&addr, &ep) {
		w.cur.Endpoints[bpfobj.AddrOf(addr)] = Endpoint{Identity: ep.Identity, Flags: ep.Flags}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("policy: read back the endpoints: %w", err)
	}
	var pk bpfobj.PolicyKey
	var pv bpfobj.PolicyValue
	it = maps.Policy.Iterate()
	for it.Next(&pk, &pv) {
		w.cur.Entries[EntryOf(pk)] = struct{}{}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("policy: read back the policy entries: %w", err)
	}
	return w, nil
}

// Changes counts what one Apply wrote.
type Changes struct {
	Upserts, Deletes int
}

// Apply makes the maps hold d, comparing every key (a node's first sync:
// the maps were read back from the pins).
func (w *Writer) Apply(d *Desired) (Changes, error) {
	return w.ApplyDelta(d, &Delta{All: true})
}

// both yields the keys of a and then those of b (a key in both twice: the
// writer's checks make the second visit a no-op).
func both[K comparable, V1, V2 any](a map[K]V1, b map[K]V2) iter.Seq[K] {
	return func(yield func(K) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if !yield(k) {
				return
			}
		}
	}
}

// ApplyDelta makes the maps hold d at the keys delta names (every key when
// delta.All, and those a failed write left behind), in an order that never
// denies what both the old and the new state allow: new policy entries
// first, then addresses and their identities, then the pods' isolation,
// and only then what went away (isolation lifted before the entries it
// needed go). On error the writer keeps what it did write and remembers
// the keys it did not, and the next call finishes them.
func (w *Writer) ApplyDelta(d *Desired, delta *Delta) (Changes, error) {
	if w.retry != nil {
		if delta.IPCache == nil {
			all := delta.All
			delta = newDelta()
			delta.All = all
		}
		delta.merge(w.retry)
		w.retry = nil
	}
	entries, ipcache, cidr, endpoints := maps.Keys(delta.Entries), maps.Keys(delta.IPCache), maps.Keys(delta.CIDR), maps.Keys(delta.Endpoints)
	if delta.All {
		entries, ipcache, cidr, endpoints = both(d.Entries, w.cur.Entries), both(d.IPCache, w.cur.IPCache), both(d.CIDR, w.cur.CIDR), both(d.Endpoints, w.cur.Endpoints)
	}
	failed := newDelta()
	var ch Changes
	var errs []error
	note := func(err error, what string) bool {
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
			return false
		}
		return true
	}
	for e := range entries {
		_, want := d.Entries[e]
		_, have := w.cur.Entries[e]
		if !want || have {
			continue
		}
		if note(w.maps.Policy.Put(e.Key(), bpfobj.PolicyValue{}), "add policy entry "+e.String()) {
			w.cur.Entries[e] = struct{}{}
			ch.Upserts++
		} else {
			failed.Entries[e] = struct{}{}
		}
	}
	upsertPrefixes(w.maps.CIDR, cidr, d.CIDR, w.cur.CIDR, failed.CIDR, &ch, note)
	upsertPrefixes(w.maps.IPCache, ipcache, d.IPCache, w.cur.IPCache, failed.IPCache, &ch, note)
	for a := range endpoints {
		ep, want := d.Endpoints[a]
		if old, ok := w.cur.Endpoints[a]; !want || (ok && old == ep) {
			continue
		}
		if note(w.maps.Endpoints.Put(bpfobj.AddrKey(a), bpfobj.PolicyEndpoint{Identity: ep.Identity, Flags: ep.Flags}), "isolate "+a.String()) {
			w.cur.Endpoints[a] = ep
			ch.Upserts++
		} else {
			failed.Endpoints[a] = struct{}{}
		}
	}
	for a := range endpoints {
		_, want := d.Endpoints[a]
		_, have := w.cur.Endpoints[a]
		if want || !have {
			continue
		}
		if note(w.maps.Endpoints.Delete(bpfobj.AddrKey(a)), "lift the isolation of "+a.String()) {
			delete(w.cur.Endpoints, a)
			ch.Deletes++
		} else {
			failed.Endpoints[a] = struct{}{}
		}
	}
	deletePrefixes(w.maps.IPCache, ipcache, d.IPCache, w.cur.IPCache, failed.IPCache, &ch, note)
	deletePrefixes(w.maps.CIDR, cidr, d.CIDR, w.cur.CIDR, failed.CIDR, &ch, note)
	for e := range entries {
		_, want := d.Entries[e]
		_, have := w.cur.Entries[e]
		if want || !have {
			continue
		}
		if note(w.maps.Policy.Delete(e.Key()), "remove policy entry "+e.String()) {
			delete(w.cur.Entries, e)
			ch.Deletes++
		} else {
			failed.Entries[e] = struct{}{}
		}
	}
	if failed.Len() > 0 {
		w.retry = failed
	}
	return ch, errors.Join(errs...)
}

func upsertPrefixes(m *ebpf.Map, keys iter.Seq[netip.Prefix], want, cur map[netip.Prefix]uint32, failed map[netip.Prefix]struct{}, ch *Changes, note func(error, string) bool) {
	for p := range keys {
		id, ok := want[p]
		if old, had := cur[p]; !ok || (had && old == id) {
			continue
		}
		if note(m.Put(bpfobj.PrefixKey(p), bpfobj.IPCacheValue{Identity: id}), fmt.Sprintf("map %s to identity %d", p, id)) {
			cur[p] = id
			ch.Upserts++
		} else {
			failed[p] = struct{}{}
		}
	}
}

func deletePrefixes(m *ebpf.Map, keys iter.Seq[netip.Prefix], want, cur map[netip.Prefix]uint32, failed map[netip.Prefix]struct{}, ch *Changes, note func(error, string) bool) {
	for p := range keys {
		_, ok := want[p]
		if _, had := cur[p]; ok || !had {
			continue
		}
		if note(m.Delete(bpfobj.PrefixKey(p)), "forget "+p.String()) {
			delete(cur, p)
			ch.Deletes++
		} else {
			failed[p] = struct{}{}
		}
	}
}

// Counts are the entries the writer holds, by map.
func (w *Writer) Counts() map[string]int {
	return map[string]int{bpfobj.MapIPCache: len(w.cur.IPCache), bpfobj.MapPolicyCIDR: len(w.cur.CIDR),
		bpfobj.MapPolicyEndpoints: len(w.cur.Endpoints), bpfobj.MapPolicy: len(w.cur.Entries)}
}
