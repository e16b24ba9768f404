package proxy

import (
	"fmt"
	"net/netip"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
)

// ApplyAll writes many Services in one batch; the maps end as they would
// one write at a time, and connections find their backends.
func TestApplyAllBatchesWrites(t *testing.T) {
	env := bpftest.New(t)
	h := start(t, env, fake.NewClientset())
	env.Enter(t)
	be := tcpBackend(t, "batched")
	backend := BackendAddr{Address: netip.MustParseAddr("127.0.0.1"), Port: uint16(be.Port)}
	const n = 600
	all := map[string][]Frontend{}
	for i := range n {
		vip := netip.AddrFrom4([4]byte{10, 97, byte(i / 250), byte(1 + i%250)})
		all[fmt.Sprintf("default/s%d", i)] = []Frontend{{Key: FrontendKey{Address: vip, Port: 80, Proto: protoTCP}, Backends: []BackendAddr{backend}}}
	}
	before := h.proxy.Writes()
	if err := h.proxy.ApplyAll(all); err != nil {
		t.Fatal(err)
	}
	// Per Service: its rev-NAT entry, backend, slot 1 and slot 0.
	if w := h.proxy.Writes() - before; w != 4*n {
		t.Errorf("%d writes counted, want %d", w, 4*n)
	}
	count := func(name string) int {
		m := h.lb.Maps.ByName(name)
		n := 0
		it := m.Iterate()
		key, val := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		for it.Next(&key, &val) {
			n++
		}
		return n
	}
	// The kubernetes-less harness has no other Service.
	if got := count(bpfobj.MapServices); got != 2*n {
		t.Errorf("%d service slots, want %d", got, 2*n)
	}
	if got := count(bpfobj.MapBackends); got != n {
		t.Errorf("%d backends, want %d", got, n)
	}
	for _, vip := range []string{"10.97.0.1:80", "10.97.2.100:80"} {
		if name, peer, err := dialName(vip); err != nil || name != "batched" || peer != vip {
			t.Errorf("through %s: %q from %s (%v)", vip, name, peer, err)
		}
	}
	// A second ApplyAll of the same writes nothing.
	before = h.proxy.Writes()
	if err := h.proxy.ApplyAll(all); err != nil {
		t.Fatal(err)
	}
	if w := h.proxy.Writes() - before; w != 0 {
		t.Errorf("unchanged services wrote %d entries", w)
	}
}
