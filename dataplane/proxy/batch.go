package proxy

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// pendingWrites holds map updates made while a batch is open, by map, in
// the order they were made. Flushing writes the rev-NAT entries, then the
// backends, then the service slots (each frontend's slots before its slot
// 0, as made): every frontend published by a slot 0 finds its backends,
// as when written one by one, at a few syscalls per map instead of one
// per entry.
type pendingWrites struct {
	revKeys []uint16
	revVals []bpfobj.RevNat
	beKeys  []uint32
	beVals  []bpfobj.Backend
	svcKeys []bpfobj.ServiceKey
	svcVals []bpfobj.ServiceValue
}

// add queues an update of one of the batched maps; false for any other.
func (b *pendingWrites) add(t *tables, m *ebpf.Map, k, v any) bool {
	switch {
	case m == t.maps.RevNat:
		kk, ok1 := k.(uint16)
		vv, ok2 := v.(bpfobj.RevNat)
		if ok1 && ok2 {
			b.revKeys, b.revVals = append(b.revKeys, kk), append(b.revVals, vv)
			return true
		}
	case m == t.maps.Backends:
		kk, ok1 := k.(uint32)
		vv, ok2 := v.(bpfobj.Backend)
		if ok1 && ok2 {
			b.beKeys, b.beVals = append(b.beKeys, kk), append(b.beVals, vv)
			return true
		}
	case m == t.maps.Services:
		kk, ok1 := k.(bpfobj.ServiceKey)
		vv, ok2 := v.(bpfobj.ServiceValue)
		if ok1 && ok2 {
			b.svcKeys, b.svcVals = append(b.svcKeys, kk), append(b.svcVals, vv)
			return true
		}
	}
	return false
}

func (b *pendingWrites) empty() bool {
	return len(b.revKeys) == 0 && len(b.beKeys) == 0 && len(b.svcKeys) == 0
}

// batchChunk bounds one batch syscall's copy of keys and values.
const batchChunk = 4096

// writeBatch writes keys and values to m in order, a chunk per syscall;
// where the kernel refuses a batch it writes that chunk entry by entry.
func writeBatch[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	for start := 0; start < len(keys); start += batchChunk {
		end := min(start+batchChunk, len(keys))
		if _, err := m.BatchUpdate(keys[start:end], vals[start:end], nil); err == nil {
			continue
		}
		for i := start; i < end; i++ {
			if err := m.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// begin opens a batch: updates of the service, backend and rev-NAT maps
// wait for flush. Anything else (a delete, a Maglev table) flushes first,
// so the order of writes is kept.
func (t *tables) begin() { t.batch = &pendingWrites{} }

// flush writes what the open batch holds and closes it.
func (t *tables) flush() error {
	b := t.batch
	t.batch = nil
	if b == nil || b.empty() {
		return nil
	}
	if err := writeBatch(t.maps.RevNat, b.revKeys, b.revVals); err != nil {
		return fmt.Errorf("write rev-NAT entries: %w", err)
	}
	if err := writeBatch(t.maps.Backends, b.beKeys, b.beVals); err != nil {
		return fmt.Errorf("write backends: %w", err)
	}
	if err := writeBatch(t.maps.Services, b.svcKeys, b.svcVals); err != nil {
		return fmt.Errorf("write service slots: %w", err)
	}
	return nil
}

// settle writes what is pending and keeps the batch open.
func (t *tables) settle() error {
	if t.batch == nil || t.batch.empty() {
		return nil
	}
	err := t.flush()
	t.begin()
	return err
}

// resync forgets what the tables think the maps hold and reads it back
// from the maps: after a batch failed midway, the next syncs then rewrite
// exactly what is missing.
func (t *tables) resync() error {
	t.batch = nil
	t.frontends = map[FrontendKey]*appliedFrontend{}
	t.revNats, t.backends = newIDPool(1<<16-1), newIDPool(1<<32-1)
	return t.readBack()
}
