package policy

import (
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
)

// TestWriterAppliesDeltas writes the engine's deltas to real pinned maps
// through random event sequences and reads the maps back after each: they
// hold what the engine wants, added and removed keys alike (needs root
// and BPF).
func TestWriterAppliesDeltas(t *testing.T) {
	env := bpftest.New(t)
	lb, err := bpfobj.LoadSocketLB(bpfobj.Options{PinDir: env.PinDir, CgroupPath: env.Cgroup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lb.Close)
	if err := bpfobj.LoadPodProgram(env.PinDir); err != nil {
		t.Fatal(err)
	}
	maps, err := bpfobj.OpenPolicyMaps(env.PinDir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	w, err := NewWriter(maps)
	if err != nil {
		t.Fatal(err)
	}
	g := gen{rand.New(rand.NewPCG(7, 20))}
	wd := &world{pods: map[string]*corev1.Pod{}, namespaces: map[string]*corev1.Namespace{}, policies: map[string]*networkingv1.NetworkPolicy{}}
	e := NewEngine("n1")
	sawRemoval := false
	for round := range 40 {
		for range 1 + g.r.IntN(4) {
			g.step(wd, e)
		}
		delta := e.Flush()
		ch, err := w.ApplyDelta(e.Desired(), delta)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		sawRemoval = sawRemoval || ch.Deletes > 0
		back, err := NewWriter(maps)
		if err != nil {
			t.Fatal(err)
		}
		want := e.Desired()
		// The maps hold no names.
		got := back.cur
		got.Labels = want.Labels
		if s := diff(got, want, false); s != "" {
			t.Fatalf("round %d: the maps differ from the engine:%s", round, s)
		}
	}
	if !sawRemoval {
		t.Error("no round removed anything: the sequence tests only additions")
	}
	// A first write compares every key: a new writer over the same maps
	// and a fresh engine for the same objects changes nothing.
	e2 := NewEngine("n1")
	for k, p := range wd.pods {
		e2.SetPod(k, p)
	}
	for k, ns := range wd.namespaces {
		e2.SetNamespace(k, ns)
	}
	for k, np := range wd.policies {
		e2.SetPolicy(k, np)
	}
	e2.SetHostAddrs(wd.host)
	e2.Flush()
	w2, err := NewWriter(maps)
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := w2.Apply(e2.Desired()); err != nil || ch.Upserts+ch.Deletes != 0 {
		t.Errorf("restart wrote %+v (%v); want nothing", ch, err)
	}
}
