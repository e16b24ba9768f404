package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
	"github.com/petrel-project/petrel/dataplane/maglev"
)

// maglevTableOf reads the Maglev table of the NodePort frontend on port.
func maglevTableOf(h *harness, port uint16) ([]uint32, map[uint32]bool, error) {
	var slot0 bpfobj.ServiceValue
	key := bpfobj.ServiceKey{Dport: bpfobj.PortKey(port), Proto: protoTCP}
	if err := h.lb.Maps.Services.Lookup(key, &slot0); err != nil {
		return nil, nil, fmt.Errorf("no NodePort frontend: %w", err)
	}
	ids := map[uint32]bool{}
	for i := uint16(1); i <= slot0.Count; i++ {
		var v bpfobj.ServiceValue
		key.BackendSlot = i
		if err := h.lb.Maps.Services.Lookup(key, &v); err != nil {
			return nil, nil, err
		}
		ids[v.BackendId] = true
	}
	var id ebpf.MapID
	if err := h.lb.Maps.Maglev.Lookup(slot0.RevNatIndex, &id); err != nil {
		return nil, ids, fmt.Errorf("no Maglev table: %w", err)
	}
	inner, err := ebpf.NewMapFromID(id)
	if err != nil {
		return nil, ids, err
	}
	defer inner.Close()
	table := make([]uint32, inner.MaxEntries())
	for i := range table {
		if err := inner.Lookup(uint32(i), &table[i]); err != nil {
			return nil, ids, err
		}
	}
	return table, ids, nil
}

func maglevTables(h *harness) int {
	n := 0
	var k uint16
	var v ebpf.MapID
	for it := h.lb.Maps.Maglev.Iterate(); it.Next(&k, &v); {
		n++
	}
	return n
}

func TestMaglevTables(t *testing.T) {
	env := bpftest.New(t)
	cs := fake.NewClientset()
	h := start(t, env, cs)
	ctx := context.Background()
	backends := map[string]netip.AddrPort{
		"n1": netip.MustParseAddrPort("127.0.0.21:8080"),
	}
	svc, es := svcWithSlice("mg", "10.96.88.1", 80, func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = 30888
		s.Annotations = map[string]string{AnnotationLBAlgorithm: AlgorithmMaglev}
	}, backends)
	for _, a := range []string{"127.0.0.22", "127.0.0.23"} {
		es.Endpoints = append(es.Endpoints, es.Endpoints[0])
		es.Endpoints[len(es.Endpoints)-1].Addresses = []string{a}
	}
	h.create(svc, es)

	var table []uint32
	eventually(t, "the NodePort frontend's Maglev table", func() error {
		var ids map[uint32]bool
		var err error
		table, ids, err = maglevTableOf(h, 30888)
		if err != nil {
			return err
		}
		if len(table) != maglev.TableSize || len(ids) != 3 {
			return fmt.Errorf("%d entries over %d backends", len(table), len(ids))
		}
		count := map[uint32]int{}
		for _, id := range table {
			if !ids[id] {
				return fmt.Errorf("entry names backend %d, not one of the service's", id)
			}
			count[id]++
		}
		for id, c := range count {
			if c < maglev.TableSize/3 || c > maglev.TableSize/3+1 {
				return fmt.Errorf("backend %d has %d entries", id, c)
			}
		}
		return nil
	})
	// Only external frontends get one: not the ClusterIP.
	if n := maglevTables(h); n != 1 {
		t.Errorf("%d Maglev tables, want the NodePort's only", n)
	}

	parent := t
	t.Run("a restarted proxy reads the table back and rewrites nothing", func(t *testing.T) {
		h.close()
		h2 := start(parent, env, cs)
		if w := h2.proxy.Writes(); w != 0 {
			t.Errorf("restart wrote %d map entries, want 0", w)
		}
		h = h2
	})

	t.Run("a backend gone moves only its own entries", func(t *testing.T) {
		cur, err := cs.DiscoveryV1().EndpointSlices("default").Get(ctx, "mg-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Endpoints = cur.Endpoints[:2]
		if _, err := cs.DiscoveryV1().EndpointSlices("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a table over two backends", func() error {
			after, ids, err := maglevTableOf(h, 30888)
			if err != nil {
				return err
			}
			if len(ids) != 2 {
				return fmt.Errorf("%d backends", len(ids))
			}
			moved := 0
			for i := range after {
				if ids[table[i]] && after[i] != table[i] {
					moved++
				}
			}
			if moved > maglev.TableSize/10 {
				return fmt.Errorf("%d entries of the backends that stayed moved", moved)
			}
			return nil
		})
	})

	t.Run("dropping the annotation drops the table", func(t *testing.T) {
		cur, err := cs.CoreV1().Services("default").Get(ctx, "mg", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Annotations = nil
		if _, err := cs.CoreV1().Services("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "no Maglev table", func() error {
			if n := maglevTables(h); n != 0 {
				return fmt.Errorf("%d tables", n)
			}
			return nil
		})
	})
}
