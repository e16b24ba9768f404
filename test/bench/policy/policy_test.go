package policy

import (
	"bytes"
	"maps"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/petrel-project/petrel/dataplane/policy"
)

// The synthetic load is what the suite says: the policies asked for, the
// real pods isolated, and the node's engine finds entries for both.
func TestSyntheticLoad(t *testing.T) {
	l := syntheticLoad(100, 200)
	if len(l.policies) != 100 || len(l.pods) != 202 {
		t.Fatalf("%d policies, %d pods", len(l.policies), len(l.pods))
	}
	d := policy.Compute(l.input())
	for _, a := range []string{pbClient.String(), pbServer.String()} {
		found := false
		for addr := range d.Endpoints {
			found = found || addr.String() == a
		}
		if !found {
			t.Errorf("%s is not isolated: %v", a, d.Endpoints)
		}
	}
	// The bench drives the node's incremental engine: told the load (and
	// then the load with the server's policy closed), it holds what
	// Compute makes of it.
	eng := policy.NewEngine(pbNode)
	told := &toldObjects{}
	told.tell(eng, l)
	eng.Flush()
	if got := eng.Desired(); !maps.Equal(got.Entries, d.Entries) || !maps.Equal(got.Endpoints, d.Endpoints) || !maps.Equal(got.IPCache, d.IPCache) {
		t.Errorf("engine: %d entries, %d endpoints; Compute: %d, %d", len(got.Entries), len(got.Endpoints), len(d.Entries), len(d.Endpoints))
	}
	closed := *l
	closed.policies = append(append([]*networkingv1.NetworkPolicy(nil), l.policies[:len(l.policies)-2]...), serverPolicy(false), l.policies[len(l.policies)-1])
	told.tell(eng, &closed)
	if delta := eng.Flush(); len(delta.Entries) == 0 || len(delta.Endpoints) != 0 {
		t.Errorf("closing the server's policy changed %d entries and %d endpoints", len(delta.Entries), len(delta.Endpoints))
	}
	if want := policy.Compute(closed.input()); !maps.Equal(eng.Desired().Entries, want.Entries) {
		t.Errorf("closed: engine has %d entries, Compute %d", len(eng.Desired().Entries), len(want.Entries))
	}
}

// The iptables translation has a chain and a selected-pods set per policy,
// marks what rules allow and drops isolated pods without the mark, after
// letting established connections through.
func TestIptablesRules(t *testing.T) {
	l := syntheticLoad(20, 50)
	rules, sets := iptablesRules(l)
	r := string(rules)
	for _, want := range []string{
		"-A FORWARD -j PB-FW\n",
		"-A PB-FW -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
		"-A PB-IN -m set --match-set pb-sel-18 dst -j PB-IN-18\n",
		"-A PB-IN-18 -p tcp --dport 8080 -m set --match-set pb-in-18-0 src -j MARK --set-xmark 0x20000/0x20000\n",
		"-A PB-OUT -m set --match-set pb-sel-19 src -j PB-OUT-19\n",
		"-A PB-FW -m set --match-set pb-iso-in dst -m mark ! --mark 0x20000/0x20000 -j DROP\n",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("rules lack %q", want)
		}
	}
	if strings.Index(r, "ESTABLISHED") > strings.Index(r, "-j DROP") {
		t.Error("established connections are not let through before the drops")
	}
	// The server's policy admits the client: the client is in its peer set.
	if !bytes.Contains(sets, []byte("add pb-in-18-0 "+pbClient.String()+"\n")) || !bytes.Contains(sets, []byte("add pb-sel-18 "+pbServer.String()+"\n")) {
		t.Errorf("sets:\n%s", sets)
	}
	if n := bytes.Count(sets, []byte("create ")); n < 20 {
		t.Errorf("%d sets for 20 policies", n)
	}
}

// BenchmarkComputeSyntheticLoad is one sync's Compute on the suite's load.
func BenchmarkComputeSyntheticLoad(b *testing.B) {
	in := syntheticLoad(1000, 1000).input()
	in.Cache = policy.NewCache()
	b.ReportAllocs()
	for range b.N {
		policy.Compute(in)
	}
}

// The CPU figures come from iperf3's own report of its two processes.
func TestParseIperfCPU(t *testing.T) {
	out := []byte(`{"end":{"sum_received":{"bits_per_second":3.5e9},"cpu_utilization_percent":{"host_total":98.5,"host_user":2.1,"host_system":96.4,"remote_total":61.2}}}`)
	cpu, err := parseIperfCPU(out)
	if err != nil || cpu.sender != 98.5 || cpu.receiver != 61.2 {
		t.Errorf("got %+v, %v", cpu, err)
	}
	if _, err := parseIperfCPU([]byte("not json")); err == nil {
		t.Error("no error for a broken report")
	}
}
