package network

import (
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/bench"
)

func findRow(t *testing.T, rep *bench.Report, name, baseline string) bench.Result {
	t.Helper()
	for _, r := range rep.Results {
		if r.Name == name && r.Baseline == baseline {
			return r
		}
	}
	t.Fatalf("no row %s vs %s in %+v", name, baseline, rep.Results)
	return bench.Result{}
}

func TestNetworkRows(t *testing.T) {
	fig := networkFigures{
		KernelRoutes: modeFigures{Node: pathStats{Gbps: 40, Conns: 10000}, Pod: pathStats{Gbps: 30, Conns: 8000}},
		KernelVXLAN:  modeFigures{Node: pathStats{Gbps: 40, Conns: 10000}, Pod: pathStats{Gbps: 10, Conns: 6000}},
		Native:       &modeFigures{Node: pathStats{Gbps: 40, Conns: 10000}, Pod: pathStats{Gbps: 39, Conns: 9000}},
	}
	rep := bench.NewReport("network")
	networkRows(rep, fig)
	r := findRow(t, rep, "pod_to_pod_tcp_throughput_native", "node_to_node")
	if *r.Ratio != 0.975 || *r.Goal != 0.95 || r.Met() != "yes" || r.Unit != "Gbit/s" {
		t.Errorf("native throughput row %+v", r)
	}
	r = findRow(t, rep, "pod_to_pod_connects_native", "node_to_node")
	if *r.Ratio != 0.9 || r.Met() != "no" {
		t.Errorf("native connects vs node row %+v", r)
	}
	r = findRow(t, rep, "pod_to_pod_connects_native", "kernel_routes_pod_to_pod")
	if *r.BaselineValue != 8000 || *r.Ratio != 1.125 || *r.Goal != 1.1 || r.Met() != "yes" {
		t.Errorf("native connects vs kernel row %+v", r)
	}
	if r := findRow(t, rep, "pod_to_pod_tcp_throughput_native", "kernel_routes_pod_to_pod"); r.Goal != nil {
		t.Errorf("throughput vs kernel has no goal: %+v", r)
	}
	r = findRow(t, rep, "pod_to_pod_connects_native_over_node_to_node", "kernel_routes_pod_to_pod_over_node_to_node")
	if r.Value != 0.9 || *r.BaselineValue != 0.8 || *r.Ratio != 1.125 || r.Goal != nil {
		t.Errorf("load-normalized native connects row %+v", r)
	}
	r = findRow(t, rep, "kernel_vxlan_pod_to_pod_tcp_throughput", "node_to_node")
	if *r.Ratio != 0.25 || r.Goal != nil {
		t.Errorf("kernel vxlan reference row %+v", r)
	}
	for _, res := range rep.Results {
		if strings.Contains(res.Name, "vxlan") && strings.HasPrefix(res.Name, "pod_to_pod") {
			t.Errorf("overlay row %s without an overlay run", res.Name)
		}
		if strings.Contains(res.Name, "join") {
			t.Errorf("join row %s without joins", res.Name)
		}
	}
	if len(rep.Results) != 9 {
		t.Errorf("%d rows, want 5 native and 4 kernel reference rows", len(rep.Results))
	}

	fig.Overlay = &modeFigures{Node: pathStats{Gbps: 40, Conns: 10000}, Pod: pathStats{Gbps: 36, Conns: 7000}}
	fig.Joins = []time.Duration{3 * time.Second, time.Second, 2 * time.Second, 4 * time.Second}
	rep = bench.NewReport("network")
	networkRows(rep, fig)
	r = findRow(t, rep, "pod_to_pod_tcp_throughput_vxlan", "node_to_node")
	if *r.Ratio != 0.9 || *r.Goal != 0.85 || r.Met() != "yes" {
		t.Errorf("vxlan throughput row %+v", r)
	}
	r = findRow(t, rep, "pod_to_pod_connects_vxlan", "kernel_vxlan_pod_to_pod")
	if *r.Ratio != 1.167 || r.Met() != "yes" {
		t.Errorf("vxlan connects vs kernel row %+v", r)
	}
	r = findRow(t, rep, "node_join_token_to_ready_p50_of_4", "")
	if r.Value != 2000 || r.Unit != "ms" {
		t.Errorf("join row %+v, want the p50 of 4 joins (2 s)", r)
	}
}
