package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
)

// tcpBackend answers each connection with its name and closes it.
func tcpBackend(t *testing.T, name string) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(name + "\n"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}

// udpBackend echoes each datagram prefixed with its name.
func udpBackend(t *testing.T, name string) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte(name+":"), buf[:n]...), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr)
}

type harness struct {
	t     *testing.T
	cs    *fake.Clientset
	env   *bpftest.Env
	lb    *bpfobj.SocketLB
	proxy *Proxy
	stop  context.CancelFunc
}

func start(t *testing.T, env *bpftest.Env, cs *fake.Clientset) *harness {
	t.Helper()
	lb, err := bpfobj.LoadSocketLB(bpfobj.Options{PinDir: env.PinDir, CgroupPath: env.Cgroup})
	if err != nil {
		t.Fatalf("load sock_lb: %v", err)
	}
	p, err := New(Config{NodeName: "n1", NodeAddresses: func() ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}}, &lb.Maps, nil)
	if err != nil {
		lb.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Run(ctx, cs); err != nil {
		cancel()
		lb.Close()
		t.Fatal(err)
	}
	h := &harness{t: t, cs: cs, env: env, lb: lb, proxy: p, stop: cancel}
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	if h.stop != nil {
		h.stop()
		h.lb.Close()
		h.stop = nil
	}
}

func svcWithSlice(name, vip string, port int32, mut func(*corev1.Service), backends map[string]netip.AddrPort) (*corev1.Service, *discoveryv1.EndpointSlice) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: vip, ClusterIPs: []string{vip},
			Ports: []corev1.ServicePort{{Name: "p", Port: port, Protocol: corev1.ProtocolTCP}}}}
	if mut != nil {
		mut(svc)
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	var bport int32
	for node, ap := range backends {
		bport = int32(ap.Port())
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ap.Addr().String()}, NodeName: ptr.To(node)})
	}
	// Every backend of one slice shares the port; tests with several
	// backends give them distinct loopback addresses instead.
	es.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("p"), Port: ptr.To(bport), Protocol: ptr.To(svc.Spec.Ports[0].Protocol)}}
	return svc, es
}

func (h *harness) create(svc *corev1.Service, es *discoveryv1.EndpointSlice) {
	h.t.Helper()
	ctx := context.Background()
	if _, err := h.cs.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	if es != nil {
		if _, err := h.cs.DiscoveryV1().EndpointSlices(es.Namespace).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			h.t.Fatal(err)
		}
	}
}

// dialName connects to addr and returns the backend's name and the peer the
// socket reports.
func dialName(addr string) (string, string, error) {
	c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return line[:max(len(line)-1, 0)], c.RemoteAddr().String(), err
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backendsOn listens with the same port on two loopback addresses, so that
// one EndpointSlice (one port) can hold both.
func backendsOn(t *testing.T, names ...string) map[string]netip.AddrPort {
	t.Helper()
	first := tcpBackend(t, names[0])
	out := map[string]netip.AddrPort{"n1": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(first.Port))}
	for i, name := range names[1:] {
		ip := "127.0.0." + strconv.Itoa(i+2)
		ln, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(first.Port)))
		if err != nil {
			t.Skipf("port %d taken on %s: %v", first.Port, ip, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func(name string) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte(name + "\n"))
				c.Close()
			}
		}(name)
		out["n"+strconv.Itoa(i+2)] = netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(first.Port))
	}
	return out
}

func TestSocketLB(t *testing.T) {
	env := bpftest.New(t)
	cs := fake.NewClientset()
	h := start(t, env, cs)
	env.Enter(t)
	parent := t

	t.Run("ClusterIP spreads over ready backends and getpeername shows the VIP", func(t *testing.T) {
		// The restart case below uses these backends too.
		h.create(svcWithSlice("web", "10.96.77.1", 80, nil, backendsOn(parent, "a", "b")))
		seen := map[string]int{}
		eventually(t, "ClusterIP answers", func() error { _, _, err := dialName("10.96.77.1:80"); return err })
		for range 40 {
			name, peer, err := dialName("10.96.77.1:80")
			if err != nil {
				t.Fatal(err)
			}
			if peer != "10.96.77.1:80" {
				t.Fatalf("getpeername = %s, want the service address", peer)
			}
			seen[name]++
		}
		if seen["a"] == 0 || seen["b"] == 0 {
			t.Errorf("40 connects reached %v; want both backends", seen)
		}
	})

	t.Run("no ready backend refuses at once", func(t *testing.T) {
		svc, _ := svcWithSlice("empty", "10.96.77.2", 80, nil, nil)
		h.create(svc, nil)
		eventually(t, "refusal", func() error {
			start := time.Now()
			_, err := net.DialTimeout("tcp4", "10.96.77.2:80", 2*time.Second)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return errors.New("connect error = " + errString(err))
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				return errors.New("refusal took " + d.String())
			}
			return nil
		})
	})

	t.Run("UDP replies come from the service address", func(t *testing.T) {
		ub := udpBackend(t, "u")
		svc, es := svcWithSlice("dns", "10.96.77.3", 53, func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolUDP },
			map[string]netip.AddrPort{"n1": ub.AddrPort()})
		h.create(svc, es)
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		vip := &net.UDPAddr{IP: net.ParseIP("10.96.77.3"), Port: 53}
		eventually(t, "UDP answer", func() error {
			if _, err := pc.WriteTo([]byte("ping"), vip); err != nil {
				return err
			}
			_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 100)
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return err
			}
			if string(buf[:n]) != "u:ping" || from.String() != "10.96.77.3:53" {
				return errors.New("got " + strconv.Quote(string(buf[:n])) + " from " + from.String())
			}
			return nil
		})
	})

	t.Run("NodePort on a node address", func(t *testing.T) {
		svc, es := svcWithSlice("np", "10.96.77.4", 80, func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30777
		}, backendsOn(t, "np"))
		h.create(svc, es)
		eventually(t, "NodePort answers", func() error {
			name, _, err := dialName("127.0.0.1:30777")
			if err == nil && name != "np" {
				err = errors.New("reached " + name)
			}
			return err
		})
	})

	t.Run("ClientIP affinity keeps one backend", func(t *testing.T) {
		h.create(svcWithSlice("sticky", "10.96.77.5", 80, func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}, backendsOn(t, "x", "y")))
		eventually(t, "sticky answers", func() error { _, _, err := dialName("10.96.77.5:80"); return err })
		first, _, _ := dialName("10.96.77.5:80")
		for range 30 {
			name, _, err := dialName("10.96.77.5:80")
			if err != nil || name != first {
				t.Fatalf("affinity broken: %q then %q (%v)", first, name, err)
			}
		}
	})

	t.Run("endpoint changes are written as diffs", func(t *testing.T) {
		before := h.proxy.Writes()
		if err := h.proxy.fullSync(); err != nil {
			t.Fatal(err)
		}
		if w := h.proxy.Writes() - before; w != 0 {
			t.Errorf("a full sync of unchanged services wrote %d entries, want 0", w)
		}
	})

	t.Run("a restarted proxy keeps the pinned maps and rewrites nothing", func(t *testing.T) {
		h.close()
		// While nothing runs, the pinned programs and maps keep serving.
		if name, _, err := dialName("10.96.77.1:80"); err != nil || (name != "a" && name != "b") {
			t.Fatalf("with the proxy down: %q, %v", name, err)
		}
		h2 := start(t, env, cs)
		if w := h2.proxy.Writes(); w != 0 {
			t.Errorf("restart wrote %d map entries, want 0", w)
		}
		if _, _, err := dialName("10.96.77.1:80"); err != nil {
			t.Fatalf("after restart: %v", err)
		}
		h2.close()

		// Changes made while the proxy is down are reconciled at the next
		// start, leaving no stale or duplicate entry behind.
		ctx := context.Background()
		if err := cs.CoreV1().Services("default").Delete(ctx, "sticky", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		es, err := cs.DiscoveryV1().EndpointSlices("default").Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		es.Endpoints = es.Endpoints[:1]
		if _, err := cs.DiscoveryV1().EndpointSlices("default").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		h2 = start(t, env, cs)
		checkNoLeaks(t, h2)
		if _, ok := h2.proxy.tables.frontends[FrontendKey{Address: netip.MustParseAddr("10.96.77.5"), Port: 80, Proto: protoTCP}]; ok {
			t.Error("the service deleted while the proxy was down is still programmed")
		}
		for range 10 {
			if _, _, err := dialName("10.96.77.1:80"); err != nil {
				t.Fatalf("after reconcile: %v", err)
			}
		}

		if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Checked in the map rather than by connecting: an unbalanced
		// connect to the VIP would leave the machine.
		key := serviceKey(FrontendKey{Address: netip.MustParseAddr("10.96.77.1"), Port: 80, Proto: protoTCP}, 0)
		eventually(t, "deleted service leaves the map", func() error {
			var v bpfobj.ServiceValue
			if err := h2.lb.Services.Lookup(key, &v); err == nil {
				return errors.New("frontend still in the service map")
			}
			return nil
		})
	})
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// checkNoLeaks compares the maps' entry counts with what the proxy's
// frontends account for.
func checkNoLeaks(t *testing.T, h *harness) {
	t.Helper()
	var slots, backends int
	for _, f := range h.proxy.tables.frontends {
		slots += 1 + len(f.backends)
		backends += len(f.backends)
	}
	for name, want := range map[string]int{bpfobj.MapServices: slots, bpfobj.MapBackends: backends, bpfobj.MapRevNat: len(h.proxy.tables.frontends)} {
		got, err := bpfobj.CountEntries(h.lb.Maps.ByName(name))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s holds %d entries, want %d", name, got, want)
		}
	}
}
