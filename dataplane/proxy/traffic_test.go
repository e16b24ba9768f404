package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
)

// trafficBy sums the proxy's traffic rows of one Service by backend pod.
func trafficBy(t *testing.T, p *Proxy, service string) map[string]TrafficRow {
	t.Helper()
	rows, err := p.Traffic()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]TrafficRow{}
	for _, r := range rows {
		if r.Service != service {
			continue
		}
		s := out[r.BackendPod]
		s.Connections += r.Connections
		s.Packets += r.Packets
		s.Bytes += r.Bytes
		out[r.BackendPod] = s
	}
	return out
}

// The socket load balancer counts each TCP connect, and each unconnected
// UDP datagram, for the backend it chose; the proxy names the counters by
// Service and backend pod and exports them to Prometheus; switched off,
// nothing is counted; a removed Service's counters go with it.
func TestTrafficCounters(t *testing.T) {
	env := bpftest.New(t)
	cs := fake.NewClientset()
	h := start(t, env, cs)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newTrafficCollector(h.proxy))
	env.Enter(t)
	if err := bpfobj.SetTrafficCounting(&h.lb.Maps, true); err != nil {
		t.Fatal(err)
	}

	svc, es := svcWithSlice("counted", "10.96.78.1", 80, nil, backendsOn(t, "a", "b"))
	pods := map[string]string{}
	for i := range es.Endpoints {
		name := "pod-" + es.Endpoints[i].Addresses[0]
		es.Endpoints[i].TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: name}
		pods[es.Endpoints[i].Addresses[0]] = name
	}
	h.create(svc, es)
	eventually(t, "ClusterIP answers", func() error { _, _, err := dialName("10.96.78.1:80"); return err })
	base := trafficBy(t, h.proxy, "counted")
	answered := map[string]uint64{}
	const conns = 30
	for range conns {
		name, _, err := dialName("10.96.78.1:80")
		if err != nil {
			t.Fatal(err)
		}
		answered[name]++
	}
	got := trafficBy(t, h.proxy, "counted")
	var total uint64
	for pod, r := range got {
		if pod == "" {
			t.Errorf("a row without its backend pod: %+v", r)
		}
		total += r.Connections - base[pod].Connections
	}
	if total != conns || len(got) != 2 {
		t.Fatalf("counted %d connections over %d backends, want %d over 2: %+v", total, len(got), conns, got)
	}
	for pod, r := range got {
		// A connect is at least SYN, ACK and the answer's segment.
		if n := r.Connections - base[pod].Connections; r.Packets-base[pod].Packets < 3*n || r.Bytes-base[pod].Bytes < 40*(r.Packets-base[pod].Packets) {
			t.Errorf("backend pod %s: %d connections, %d packets, %d bytes", pod, n, r.Packets-base[pod].Packets, r.Bytes-base[pod].Bytes)
		}
	}
	// backendsOn puts "a" on 127.0.0.1 and "b" on 127.0.0.2.
	for addr, name := range map[string]string{"127.0.0.1": "a", "127.0.0.2": "b"} {
		pod := pods[addr]
		if n := got[pod].Connections - base[pod].Connections; n != answered[name] {
			t.Errorf("backend pod %s counted %d connections, it answered %d", pod, n, answered[name])
		}
	}

	// The Prometheus view of the same counters.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exported float64
	for _, mf := range mfs {
		if mf.GetName() != "petrel_service_connections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["service"] == "counted" && labels["namespace"] == "default" && labels["frontend"] == "10.96.78.1:80/TCP" {
				exported += m.GetCounter().GetValue()
			}
		}
	}
	var want float64
	for _, r := range got {
		want += float64(r.Connections)
	}
	if exported != want {
		t.Errorf("petrel_service_connections_total for counted = %v, want %v", exported, want)
	}

	// UDP without connect: one new connection per socket and backend, a
	// packet per datagram.
	usvc, ues := svcWithSlice("dgram", "10.96.78.2", 53, func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolUDP },
		map[string]netip.AddrPort{"n1": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(udpBackend(t, "u").Port))})
	h.create(usvc, ues)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	vip := &net.UDPAddr{IP: net.ParseIP("10.96.78.2"), Port: 53}
	eventually(t, "UDP ClusterIP answers", func() error {
		if _, err := pc.WriteTo([]byte("x"), vip); err != nil {
			return err
		}
		_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _, err := pc.ReadFrom(make([]byte, 64))
		return err
	})
	before := trafficBy(t, h.proxy, "dgram")[""]
	for range 5 {
		if _, err := pc.WriteTo([]byte("y"), vip); err != nil {
			t.Fatal(err)
		}
	}
	after := trafficBy(t, h.proxy, "dgram")[""]
	// The echoes count too as they arrive; the 5 sent are counted at once.
	if after.Packets-before.Packets < 5 || after.Connections != before.Connections {
		t.Errorf("5 datagrams on one socket: +%d packets, +%d connections; want at least +5 and +0 (before %+v after %+v)",
			after.Packets-before.Packets, after.Connections-before.Connections, before, after)
	}

	// Off: connects go on, uncounted.
	if err := bpfobj.SetTrafficCounting(&h.lb.Maps, false); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, _, err := dialName("10.96.78.1:80"); err != nil {
			t.Fatal(err)
		}
	}
	if off := trafficBy(t, h.proxy, "counted"); sumConns(off) != sumConns(got) {
		t.Errorf("counting off, yet connections went from %d to %d", sumConns(got), sumConns(off))
	}

	// A deleted Service's counters leave the map with its ids.
	if err := cs.CoreV1().Services("default").Delete(context.Background(), "counted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the counters of a deleted Service gone", func() error {
		counts, err := bpfobj.ReadTraffic(&h.lb.Maps)
		if err != nil {
			return err
		}
		rows, _ := h.proxy.Traffic()
		for _, r := range rows {
			if r.Service == "counted" {
				return fmt.Errorf("still a row %+v (map %v)", r, counts)
			}
		}
		if len(counts) != 1 { // dgram's only
			return fmt.Errorf("the map holds %d entries, want dgram's 1: %v", len(counts), counts)
		}
		return nil
	})
}

func sumConns(m map[string]TrafficRow) uint64 {
	var s uint64
	for _, r := range m {
		s += r.Connections
	}
	return s
}
