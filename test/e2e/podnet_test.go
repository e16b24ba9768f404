package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
	"github.com/petrel-project/petrel/dataplane/proxy"
)

// TestPodToPodThroughClusterIP puts two pods on the network with
// petrel-cni (through libcni) and the socket load balancer on a cgroup: a
// process in pod A's namespace and in that cgroup reaches pod B through a
// ClusterIP, over TCP (curl) and UDP (dig, which insists the reply comes
// from the address it asked), and is refused once B leaves the Service.
func TestPodToPodThroughClusterIP(t *testing.T) {
	env := bpftest.New(t)
	for _, tool := range []string{"curl", "dig", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs it)", tool)
		}
	}
	id := fmt.Sprint(os.Getpid())

	// Pods A and B on the network.
	pluginDir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(pluginDir, "petrel-cni"), "../../cmd/petrel-cni").CombinedOutput(); err != nil {
		t.Fatalf("build petrel-cni: %v\n%s", err, out)
	}
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"petrel-e2e-%s",
		"plugins":[{"type":"petrel-cni","podCIDR":"10.252.%d.0/24","dataDir":%q}]}`, id, os.Getpid()%200, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	cniCfg := libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, t.TempDir(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nsPath := map[string]string{}
	podIP := map[string]string{}
	for _, pod := range []string{"a", "b"} {
		name := "petrel-podnet-" + pod + "-" + id
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		nsPath[pod] = "/run/netns/" + name
		rt := &libcni.RuntimeConf{ContainerID: "podnet-" + pod + "-" + id, NetNS: nsPath[pod], IfName: "eth0"}
		res, err := cniCfg.AddNetworkList(ctx, list, rt)
		if err != nil {
			t.Fatalf("CNI ADD %s: %v", pod, err)
		}
		t.Cleanup(func() { _ = cniCfg.DelNetworkList(context.Background(), list, rt) })
		r, _ := types100.NewResultFromResult(res)
		podIP[pod] = r.IPs[0].Address.IP.String()
	}
	const knob = "/proc/sys/net/ipv4/ip_forward"
	old, _ := os.ReadFile(knob)
	_ = os.WriteFile(knob, []byte("1"), 0o644)
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0o644) })

	// Pod B serves HTTP on 8080 and DNS on 5353/UDP.
	var httpLn net.Listener
	var udp net.PacketConn
	if err := ns.WithNetNSPath(nsPath["b"], func(ns.NetNS) error {
		var err error
		if httpLn, err = net.Listen("tcp4", podIP["b"]+":8080"); err != nil {
			return err
		}
		udp, err = net.ListenPacket("udp4", podIP["b"]+":5353")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "pod b") }),
		ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(httpLn) }()
	defer srv.Close()
	dnsSrv := &mdns.Server{PacketConn: udp, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		rr, _ := mdns.NewRR(q.Question[0].Name + " 5 IN A 192.0.2.53")
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = dnsSrv.ActivateAndServe() }()
	defer func() { _ = dnsSrv.Shutdown() }()

	// The Service and the socket load balancer.
	lb, err := bpfobj.LoadSocketLB(bpfobj.Options{PinDir: env.PinDir, CgroupPath: env.Cgroup})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	px, err := proxy.New(proxy.Config{NodeName: "n1", NodeAddresses: func() ([]netip.Addr, error) { return nil, nil }}, &lb.Maps, nil)
	if err != nil {
		t.Fatal(err)
	}
	vip := "10.96.201.1"
	cs := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: vip, ClusterIPs: []string{vip}, Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "b-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "b"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)},
				{Name: ptr.To("dns"), Port: ptr.To(int32(5353)), Protocol: ptr.To(corev1.ProtocolUDP)}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{podIP["b"]}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}})
	if err := px.Run(ctx, cs); err != nil {
		t.Fatal(err)
	}

	// What runs "in pod A": its network namespace and the node's cgroup.
	inPodA := func(name string, args ...string) (string, error) {
		fd, err := syscall.Open(env.Cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			return "", err
		}
		defer syscall.Close(fd)
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", filepath.Base(nsPath["a"]), name}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	poll(t, "TCP through the ClusterIP", 10*time.Second, func() error {
		out, err := inPodA("curl", "-sS", "--max-time", "2", "http://"+vip+"/")
		if err != nil || out != "pod b" {
			return fmt.Errorf("curl = %q (%v)", out, err)
		}
		return nil
	})
	out, err := inPodA("dig", "+short", "+time=2", "+tries=1", "@"+vip, "b.example")
	if err != nil || strings.TrimSpace(out) != "192.0.2.53" {
		t.Errorf("UDP through the ClusterIP: dig = %q (%v)", out, err)
	}

	// B leaves the Service: connects are refused at once.
	if err := cs.DiscoveryV1().EndpointSlices("default").Delete(ctx, "b-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "refused once the endpoint is gone", 10*time.Second, func() error {
		out, err := inPodA("curl", "-sS", "--max-time", "2", "http://"+vip+"/")
		if err == nil || !strings.Contains(out, "(7)") {
			return fmt.Errorf("curl = %q (%v)", out, err)
		}
		return nil
	})
}
