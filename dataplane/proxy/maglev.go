package proxy

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/cilium/ebpf"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/maglev"
)

// maglevTable is the table of backend ids for a frontend's backends: the
// active ones (all of them when none is active, as the slots fall back).
func maglevTable(backends []appliedBackend) []uint32 {
	use := make([]appliedBackend, 0, len(backends))
	for _, b := range backends {
		if !b.addr.Terminating {
			use = append(use, b)
		}
	}
	if len(use) == 0 {
		use = backends
	}
	names := make([]string, len(use))
	for i, b := range use {
		// What every node agrees on: the endpoint, not its local id.
		names[i] = net.JoinHostPort(b.addr.Address.String(), strconv.Itoa(int(b.addr.Port)))
	}
	idx := maglev.Table(names, maglev.TableSize)
	if idx == nil {
		return nil
	}
	out := make([]uint32, len(idx))
	for i, j := range idx {
		out[i] = use[j].id
	}
	return out
}

// syncMaglev makes the Maglev map hold the frontend's table when on, and
// nothing when off. A new table is a new inner map swapped in whole, so a
// lookup never sees half of one.
func (t *tables) syncMaglev(key FrontendKey, cur *appliedFrontend, on bool, backends []appliedBackend) error {
	if t.maps.Maglev == nil {
		return nil
	}
	var want []uint32
	if on {
		want = maglevTable(backends)
	}
	if slices.Equal(want, cur.maglev) {
		return nil
	}
	if want == nil {
		if err := t.del(t.maps.Maglev, cur.revNat); err != nil {
			return fmt.Errorf("delete the Maglev table of %s: %w", key, err)
		}
		cur.maglev = nil
		return nil
	}
	inner, err := ebpf.NewMap(&ebpf.MapSpec{Name: "petrel_maglev_t", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: uint32(len(want))})
	if err != nil {
		return fmt.Errorf("make the Maglev table of %s: %w", key, err)
	}
	defer inner.Close()
	keys := make([]uint32, len(want))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := inner.BatchUpdate(keys, want, nil); err != nil {
		return fmt.Errorf("fill the Maglev table of %s: %w", key, err)
	}
	if err := t.put(t.maps.Maglev, cur.revNat, inner); err != nil {
		return fmt.Errorf("write the Maglev table of %s: %w", key, err)
	}
	cur.maglev = want
	return nil
}

// readBackMaglev takes the tables pinned by an earlier run as written, and
// deletes those no Maglev frontend owns.
func (t *tables) readBackMaglev() {
	if t.maps.Maglev == nil {
		return
	}
	owner := map[uint16]*appliedFrontend{}
	for _, f := range t.frontends {
		if f.flags != 0xff && f.flags&bpfobj.FlagMaglev != 0 {
			owner[f.revNat] = f
		}
	}
	var id uint16
	var innerID ebpf.MapID
	var stale []uint16
	it := t.maps.Maglev.Iterate()
	for it.Next(&id, &innerID) {
		f := owner[id]
		if f == nil {
			stale = append(stale, id)
			continue
		}
		f.maglev = readTable(innerID)
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return
	}
	for _, id := range stale {
		_ = t.del(t.maps.Maglev, id)
	}
}

func readTable(id ebpf.MapID) []uint32 {
	inner, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil
	}
	defer inner.Close()
	n := int(inner.MaxEntries())
	keys, vals := make([]uint32, n), make([]uint32, n)
	var cursor ebpf.MapBatchCursor
	got, err := inner.BatchLookup(&cursor, keys, vals, nil)
	if got != n || (err != nil && !errors.Is(err, ebpf.ErrKeyNotExist)) {
		return nil
	}
	out := make([]uint32, n)
	for i, k := range keys {
		if int(k) >= n {
			return nil
		}
		out[k] = vals[i]
	}
	return out
}
