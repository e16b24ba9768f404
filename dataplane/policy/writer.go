package policy

import (
	"errors"
	"fmt"
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

// Apply makes the maps hold d, in an order that never denies what both the
// old and the new state allow: new policy entries first, then addresses and
// their identities, then the pods' isolation, and only then what went away
// (isolation lifted before the entries it needed go). On error the writer
// keeps what it did write, and the next Apply finishes the rest.
func (w *Writer) Apply(d *Desired) (Changes, error) {
	var ch Changes
	var errs []error
	note := func(err error, what string) {
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	for e := range d.Entries {
		if _, ok := w.cur.Entries[e]; ok {
			continue
		}
		err := w.maps.Policy.Put(e.Key(), bpfobj.PolicyValue{})
		note(err, "add policy entry "+e.String())
		if err == nil {
			w.cur.Entries[e] = struct{}{}
			ch.Upserts++
		}
	}
	upsertPrefixes(w.maps.CIDR, d.CIDR, w.cur.CIDR, &ch, note)
	upsertPrefixes(w.maps.IPCache, d.IPCache, w.cur.IPCache, &ch, note)
	for a, ep := range d.Endpoints {
		if old, ok := w.cur.Endpoints[a]; ok && old == ep {
			continue
		}
		err := w.maps.Endpoints.Put(bpfobj.AddrKey(a), bpfobj.PolicyEndpoint{Identity: ep.Identity, Flags: ep.Flags})
		note(err, "isolate "+a.String())
		if err == nil {
			w.cur.Endpoints[a] = ep
			ch.Upserts++
		}
	}
	for a := range w.cur.Endpoints {
		if _, ok := d.Endpoints[a]; ok {
			continue
		}
		err := w.maps.Endpoints.Delete(bpfobj.AddrKey(a))
		note(err, "lift the isolation of "+a.String())
		if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
			delete(w.cur.Endpoints, a)
			ch.Deletes++
		}
	}
	deletePrefixes(w.maps.IPCache, d.IPCache, w.cur.IPCache, &ch, note)
	deletePrefixes(w.maps.CIDR, d.CIDR, w.cur.CIDR, &ch, note)
	for e := range w.cur.Entries {
		if _, ok := d.Entries[e]; ok {
			continue
		}
		err := w.maps.Policy.Delete(e.Key())
		note(err, "remove policy entry "+e.String())
		if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
			delete(w.cur.Entries, e)
			ch.Deletes++
		}
	}
	return ch, errors.Join(errs...)
}

func upsertPrefixes(m *ebpf.Map, want, cur map[netip.Prefix]uint32, ch *Changes, note func(error, string)) {
	for p, id := range want {
		if old, ok := cur[p]; ok && old == id {
			continue
		}
		err := m.Put(bpfobj.PrefixKey(p), bpfobj.IPCacheValue{Identity: id})
		note(err, fmt.Sprintf("map %s to identity %d", p, id))
		if err == nil {
			cur[p] = id
			ch.Upserts++
		}
	}
}

func deletePrefixes(m *ebpf.Map, want, cur map[netip.Prefix]uint32, ch *Changes, note func(error, string)) {
	for p := range cur {
		if _, ok := want[p]; ok {
			continue
		}
		err := m.Delete(bpfobj.PrefixKey(p))
		note(err, "forget "+p.String())
		if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
			delete(cur, p)
			ch.Deletes++
		}
	}
}

// Counts are the entries the writer holds, by map.
func (w *Writer) Counts() map[string]int {
	return map[string]int{bpfobj.MapIPCache: len(w.cur.IPCache), bpfobj.MapPolicyCIDR: len(w.cur.CIDR),
		bpfobj.MapPolicyEndpoints: len(w.cur.Endpoints), bpfobj.MapPolicy: len(w.cur.Entries)}
}
