package proxy

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// appliedFrontend is what the maps hold for one frontend.
type appliedFrontend struct {
	owner    string // namespace/name of the Service; empty when read back from pins
	revNat   uint16
	flags    uint8
	timeout  uint32
	backends []appliedBackend // slot i+1 holds backends[i]
	maglev   []uint32         // the Maglev table written (backend ids), nil for none
}

type appliedBackend struct {
	id   uint32
	addr BackendAddr
}

// tables writes frontends into the BPF maps as diffs and remembers what the
// maps hold, so that an unchanged frontend costs no syscall.
type tables struct {
	maps      *bpfobj.Maps
	frontends map[FrontendKey]*appliedFrontend
	revNats   idPool
	backends  idPool
	writes    uint64 // map updates and deletes, for tests and metrics
	batch     *pendingWrites
}

func newTables(m *bpfobj.Maps) *tables {
	return &tables{maps: m, frontends: map[FrontendKey]*appliedFrontend{},
		revNats: newIDPool(1<<16 - 1), backends: newIDPool(1<<32 - 1)}
}

func serviceKey(k FrontendKey, slot uint16) bpfobj.ServiceKey {
	return bpfobj.ServiceKey{Address: bpfobj.AddrKey(k.Address), Dport: bpfobj.PortKey(k.Port), BackendSlot: slot, Proto: k.Proto}
}

func (t *tables) put(m *ebpf.Map, k, v any) error {
	t.writes++
	if t.batch != nil {
		if t.batch.add(t, m, k, v) {
			return nil
		}
		if err := t.settle(); err != nil {
			return err
		}
	}
	return m.Put(k, v)
}

func (t *tables) del(m *ebpf.Map, k any) error {
	t.writes++
	if err := t.settle(); err != nil {
		return err
	}
	if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// apply makes the maps hold want for one frontend. Order matters for the
// lookups running meanwhile: new backends first, then the slots, then slot 0
// (which publishes the count), and only then what is no longer referenced.
func (t *tables) apply(owner string, want Frontend) error {
	cur := t.frontends[want.Key]
	if cur == nil {
		id, err := t.revNats.take()
		if err != nil {
			return fmt.Errorf("frontend %s: %w", want.Key, err)
		}
		cur = &appliedFrontend{revNat: uint16(id)}
		rn := bpfobj.RevNat{Address: bpfobj.AddrKey(want.Key.Address), Port: bpfobj.PortKey(want.Key.Port)}
		if err := t.put(t.maps.RevNat, uint16(id), rn); err != nil {
			t.revNats.release(id)
			return fmt.Errorf("write rev-NAT %d for %s: %w", id, want.Key, err)
		}
		t.frontends[want.Key] = cur
		cur.flags = 0xff // force slot 0 to be written
	}
	cur.owner = owner

	// Re-use the ids of backends that stay; new ones get fresh ids.
	byAddr := make(map[BackendAddr]uint32, len(cur.backends))
	for _, b := range cur.backends {
		byAddr[b.addr] = b.id
	}
	next := make([]appliedBackend, len(want.Backends))
	for i, addr := range want.Backends {
		id, ok := byAddr[addr]
		if !ok {
			// A backend whose terminating state flipped keeps its address but
			// needs its entry rewritten; a fresh id keeps the old one valid
			// for lookups that are midway.
			var err error
			if id, err = t.backends.take(); err != nil {
				return fmt.Errorf("frontend %s: %w", want.Key, err)
			}
			state := uint8(bpfobj.BackendActive)
			if addr.Terminating {
				state = bpfobj.BackendTerminating
			}
			be := bpfobj.Backend{Address: bpfobj.AddrKey(addr.Address), Port: bpfobj.PortKey(addr.Port), Proto: want.Key.Proto, State: state}
			if err := t.put(t.maps.Backends, id, be); err != nil {
				t.backends.release(id)
				return fmt.Errorf("write backend %d: %w", id, err)
			}
		}
		delete(byAddr, addr)
		next[i] = appliedBackend{id: id, addr: addr}
	}
	for i, b := range next {
		if i < len(cur.backends) && cur.backends[i].id == b.id {
			continue
		}
		if err := t.put(t.maps.Services, serviceKey(want.Key, uint16(i+1)), bpfobj.ServiceValue{BackendId: b.id}); err != nil {
			return fmt.Errorf("write slot %d of %s: %w", i+1, want.Key, err)
		}
	}
	if cur.flags != want.Flags || cur.timeout != want.AffinityTimeout || len(cur.backends) != len(next) {
		v := bpfobj.ServiceValue{Count: uint16(len(next)), RevNatIndex: cur.revNat, Flags: want.Flags, AffinityTimeout: want.AffinityTimeout}
		if err := t.put(t.maps.Services, serviceKey(want.Key, 0), v); err != nil {
			return fmt.Errorf("write service entry of %s: %w", want.Key, err)
		}
	}
	for i := len(next); i < len(cur.backends); i++ {
		if err := t.del(t.maps.Services, serviceKey(want.Key, uint16(i+1))); err != nil {
			return fmt.Errorf("delete slot %d of %s: %w", i+1, want.Key, err)
		}
	}
	// The table before the backends it no longer names go.
	if err := t.syncMaglev(want.Key, cur, want.Flags&bpfobj.FlagMaglev != 0, next); err != nil {
		return err
	}
	for _, id := range byAddr {
		if err := t.del(t.maps.Backends, id); err != nil {
			return fmt.Errorf("delete backend %d: %w", id, err)
		}
		t.forgetTraffic(cur.revNat, id)
		t.backends.release(id)
	}
	cur.flags, cur.timeout, cur.backends = want.Flags, want.AffinityTimeout, next
	return nil
}

// remove deletes a frontend: slot 0 first, so that lookups stop at once.
func (t *tables) remove(key FrontendKey) error {
	cur := t.frontends[key]
	if cur == nil {
		return nil
	}
	if err := t.del(t.maps.Services, serviceKey(key, 0)); err != nil {
		return fmt.Errorf("delete service entry of %s: %w", key, err)
	}
	if err := t.syncMaglev(key, cur, false, nil); err != nil {
		return err
	}
	for i, b := range cur.backends {
		if err := t.del(t.maps.Services, serviceKey(key, uint16(i+1))); err != nil {
			return fmt.Errorf("delete slot %d of %s: %w", i+1, key, err)
		}
		if err := t.del(t.maps.Backends, b.id); err != nil {
			return fmt.Errorf("delete backend %d: %w", b.id, err)
		}
		t.forgetTraffic(cur.revNat, b.id)
		t.backends.release(b.id)
	}
	if err := t.del(t.maps.RevNat, cur.revNat); err != nil {
		return fmt.Errorf("delete rev-NAT %d: %w", cur.revNat, err)
	}
	t.revNats.release(uint32(cur.revNat))
	delete(t.frontends, key)
	return nil
}

// readBack rebuilds the applied state from maps pinned by an earlier run, so
// that a restarted proxy rewrites only what changed while it was down. Entries
// that do not hang together (a slot without its backend) are deleted.
func (t *tables) readBack() error {
	var k bpfobj.ServiceKey
	var v bpfobj.ServiceValue
	slots := map[FrontendKey]map[uint16]uint32{}
	var orphans []bpfobj.ServiceKey
	it := t.maps.Services.Iterate()
	for it.Next(&k, &v) {
		fk := FrontendKey{Address: bpfobj.AddrOf(k.Address), Port: bpfobj.PortOf(k.Dport), Proto: k.Proto}
		if k.BackendSlot == 0 {
			t.frontends[fk] = &appliedFrontend{revNat: v.RevNatIndex, flags: v.Flags, timeout: v.AffinityTimeout,
				backends: make([]appliedBackend, v.Count)}
			t.revNats.mark(uint32(v.RevNatIndex))
			continue
		}
		if slots[fk] == nil {
			slots[fk] = map[uint16]uint32{}
		}
		slots[fk][k.BackendSlot] = v.BackendId
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the service map: %w", err)
	}
	var be bpfobj.Backend
	var id uint32
	backends := map[uint32]BackendAddr{}
	bit := t.maps.Backends.Iterate()
	for bit.Next(&id, &be) {
		backends[id] = BackendAddr{Address: bpfobj.AddrOf(be.Address), Port: bpfobj.PortOf(be.Port), Terminating: be.State == bpfobj.BackendTerminating}
	}
	if err := bit.Err(); err != nil {
		return fmt.Errorf("read the backend map: %w", err)
	}
	used := map[uint32]bool{}
	for fk, f := range t.frontends {
		whole := true
		for i := range f.backends {
			bid, ok := slots[fk][uint16(i+1)]
			addr, found := backends[bid]
			if !ok || !found {
				whole = false
				break
			}
			f.backends[i] = appliedBackend{id: bid, addr: addr}
			used[bid] = true
			t.backends.mark(bid)
			delete(slots[fk], uint16(i+1))
		}
		if !whole {
			// Forget it; the first sync writes it whole again.
			f.backends = nil
			f.flags = 0xff
		}
	}
	for fk, rest := range slots {
		for slot := range rest {
			orphans = append(orphans, serviceKey(fk, slot))
		}
	}
	for _, ok := range orphans {
		_ = t.del(t.maps.Services, ok)
	}
	t.readBackMaglev()
	for bid := range backends {
		if !used[bid] {
			_ = t.del(t.maps.Backends, bid)
		}
	}
	return nil
}
