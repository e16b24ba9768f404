package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
	"github.com/petrel-project/petrel/dataplane/lbview"
	"github.com/petrel-project/petrel/dataplane/policy"
	"github.com/petrel-project/petrel/dataplane/proxy"
)

// loaded programs known frontends into freshly pinned maps.
func loaded(t *testing.T) string {
	env := bpftest.New(t)
	lb, err := bpfobj.LoadSocketLB(bpfobj.Options{PinDir: env.PinDir, CgroupPath: env.Cgroup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lb.Close)
	p, err := proxy.New(proxy.Config{NodeName: "n1", NodeAddresses: func() ([]netip.Addr, error) { return nil, nil }}, &lb.Maps, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.Apply("default/web", []proxy.Frontend{
		{Key: proxy.FrontendKey{Address: a("10.96.1.1"), Port: 80, Proto: 6}, Flags: bpfobj.FlagAffinity, AffinityTimeout: 60,
			Backends: []proxy.BackendAddr{{Address: a("10.244.0.2"), Port: 8080}, {Address: a("10.244.0.3"), Port: 8080, Terminating: true}}},
		{Key: proxy.FrontendKey{Address: netip.IPv4Unspecified(), Port: 30080, Proto: 6}, Flags: bpfobj.FlagNodePort,
			Backends: []proxy.BackendAddr{{Address: a("10.244.0.2"), Port: 8080}}},
	}))
	must(p.Apply("default/empty", []proxy.Frontend{{Key: proxy.FrontendKey{Address: a("10.96.1.2"), Port: 53, Proto: 17}}}))
	return env.PinDir
}

func runCtl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := bpfCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("petrelctl bpf %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

func TestBPFViews(t *testing.T) {
	dir := loaded(t)

	t.Run("lb list as a table", func(t *testing.T) {
		out := runCtl(t, "lb", "list", "--pin-dir", dir)
		for _, want := range []string{
			"10.96.1.1:80/TCP", "10.244.0.2:8080", "active", "10.244.0.3:8080", "terminating", "affinity timeout=60s",
			"*:30080/TCP", "nodeport", "10.96.1.2:53/UDP", "(none: connects are refused)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("lb list lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("lb list as JSON", func(t *testing.T) {
		var rows []lbview.Frontend
		if err := json.Unmarshal([]byte(runCtl(t, "lb", "list", "--pin-dir", dir, "-o", "json")), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 {
			t.Fatalf("%d frontends, want 3: %+v", len(rows), rows)
		}
		// Sorted by address: *:30080 (0.0.0.0) first, then 10.96.1.1, 10.96.1.2.
		web := rows[1]
		if web.Frontend != "10.96.1.1:80/TCP" || len(web.Backends) != 2 || web.Backends[0].Slot != 1 || web.Backends[1].Slot != 2 ||
			web.Backends[1].State != "terminating" || web.AffinityTimeout != 60 {
			t.Errorf("web frontend = %+v", web)
		}
		if rows[0].Frontend != "*:30080/TCP" || rows[2].Frontend != "10.96.1.2:53/UDP" || len(rows[2].Backends) != 0 {
			t.Errorf("frontends = %+v", rows)
		}
		ids := map[uint16]bool{}
		for _, r := range rows {
			ids[r.RevNatID] = true
		}
		if len(ids) != 3 {
			t.Errorf("rev-NAT ids not distinct: %+v", rows)
		}
	})

	t.Run("backends, revnat and maps", func(t *testing.T) {
		var backends []lbview.Backend
		if err := json.Unmarshal([]byte(runCtl(t, "lb", "list", "--backends", "--pin-dir", dir, "-o", "json")), &backends); err != nil {
			t.Fatal(err)
		}
		if len(backends) != 3 { // two for the ClusterIP, one for the NodePort: ids are per frontend
			t.Errorf("backends = %+v", backends)
		}
		var revnat []lbview.RevNat
		if err := json.Unmarshal([]byte(runCtl(t, "lb", "list", "--revnat", "--pin-dir", dir, "-o", "json")), &revnat); err != nil {
			t.Fatal(err)
		}
		if len(revnat) != 3 {
			t.Errorf("revnat = %+v", revnat)
		}
		var maps []lbview.Map
		if err := json.Unmarshal([]byte(runCtl(t, "maps", "--pin-dir", dir, "-o", "json")), &maps); err != nil {
			t.Fatal(err)
		}
		entries := map[string]int{}
		for _, m := range maps {
			entries[m.Name] = m.Entries
		}
		// Slot 0 of three frontends + 2 + 1 backend slots.
		if entries[bpfobj.MapServices] != 6 || entries[bpfobj.MapBackends] != 3 || entries[bpfobj.MapRevNat] != 3 {
			t.Errorf("map entries = %v", entries)
		}
		if table := runCtl(t, "maps", "--pin-dir", dir); !strings.Contains(table, "petrel_lb4_svc") || !strings.Contains(table, "65536") {
			t.Errorf("maps table:\n%s", table)
		}
	})

	t.Run("a missing pin directory says what to do", func(t *testing.T) {
		cmd := bpfCommand()
		cmd.SetArgs([]string{"maps", "--pin-dir", dir + "-absent"})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), "petrel node") {
			t.Errorf("error = %v", err)
		}
	})
}

// petrelctl bpf tunnel list and stats read the pinned tunnel map, as the
// routing reconciler wrote it, without a node daemon.
func TestTunnelView(t *testing.T) {
	dir := loaded(t)
	if err := bpfobj.LoadPodProgram(dir); err != nil {
		t.Fatal(err)
	}
	m, err := bpfobj.OpenPinnedMap(dir, bpfobj.MapTunnel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	put := func(cidr, node string, how uint8) {
		t.Helper()
		info := bpfobj.TunnelInfo{NodeAddr: bpfobj.AddrKey(netip.MustParseAddr(node)), Ifindex: 1, How: how}
		if err := m.Put(bpfobj.TunnelKeyOf(netip.MustParsePrefix(cidr)), info); err != nil {
			t.Fatal(err)
		}
	}
	put("10.244.3.0/24", "203.0.113.10", bpfobj.TunnelVXLAN)
	put("10.244.2.0/24", "198.51.100.11", bpfobj.TunnelNative)

	var rows []bpfobj.TunnelEntry
	if err := json.Unmarshal([]byte(runCtl(t, "tunnel", "list", "--pin-dir", dir, "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].PodCIDR.String() != "10.244.2.0/24" || rows[0].How != "native" || rows[0].NodeAddr.String() != "198.51.100.11" ||
		rows[1].How != "vxlan" || rows[1].NodeAddr.String() != "203.0.113.10" || rows[1].Interface != "lo" {
		t.Errorf("tunnel list = %+v", rows)
	}
	if out := runCtl(t, "tunnel", "list", "--pin-dir", dir); !strings.Contains(out, "10.244.3.0/24") || !strings.Contains(out, "vxlan") {
		t.Errorf("tunnel list table:\n%s", out)
	}
	var stats []forwardStat
	if err := json.Unmarshal([]byte(runCtl(t, "tunnel", "stats", "--pin-dir", dir, "-o", "json")), &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats) != len(bpfobj.ForwardStatNames) || stats[0].Path != "native_redirect_neigh" {
		t.Errorf("tunnel stats = %+v", stats)
	}
}

// petrelctl bpf policy list reads what the policy writer put in the pinned
// maps: isolated pods, their peers (ipBlock prefixes named) and port
// ranges merged back from their aligned blocks.
func TestPolicyView(t *testing.T) {
	dir := loaded(t)
	if err := bpfobj.LoadPodProgram(dir); err != nil {
		t.Fatal(err)
	}
	// No API here: identities stay numbers.
	t.Setenv("KUBECONFIG", filepath.Join(dir, "absent.kubeconfig"))
	maps, err := bpfobj.OpenPolicyMaps(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	w, err := policy.NewWriter(maps)
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name, ip string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "a"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24"}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(8000)), EndPort: ptr.To[int32](8090)}}}}}}
	in := policy.Input{NodeName: "n1", Pods: []*corev1.Pod{pod("a", "10.244.0.5"), pod("b", "10.244.0.6")},
		Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}}, Policies: []*networkingv1.NetworkPolicy{np}}
	if _, err := w.Apply(policy.Compute(in)); err != nil {
		t.Fatal(err)
	}
	var rows []policyPod
	out := runCtl(t, "policy", "list", "--pin-dir", dir, "-o", "json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := `[{10.244.0.5 ingress,egress [{ingress cidr 203.0.113.0/24 TCP 8000-8090}]}]`
	var got []string
	for _, r := range rows {
		var allows []string
		for _, a := range r.Allows {
			allows = append(allows, fmt.Sprintf("{%s %s %s %s}", a.Direction, a.Peer, a.Protocol, a.Ports))
		}
		got = append(got, fmt.Sprintf("{%s %s [%s]}", r.Address, isolation(r), strings.Join(allows, " ")))
	}
	if g := "[" + strings.Join(got, " ") + "]"; g != want {
		t.Errorf("policy list = %s, want %s\n%s", g, want, out)
	}
	// One pod; one that no policy isolates says so.
	if out := runCtl(t, "policy", "list", "10.244.0.6", "--pin-dir", dir); !strings.Contains(out, "no policy: everything allowed") {
		t.Errorf("policy list of an unisolated pod:\n%s", out)
	}
	if out := runCtl(t, "policy", "list", "10.244.0.5", "--pin-dir", dir); !strings.Contains(out, "8000-8090") || strings.Contains(out, "10.244.0.6") {
		t.Errorf("policy list of one pod:\n%s", out)
	}
}
