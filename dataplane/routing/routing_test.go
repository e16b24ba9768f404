package routing

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func node(name, cidr, ip string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

// TestRoutesFollowNodes runs the router in a network namespace of its own
// with a link on 192.168.77.0/24, standing in for the node network.
func TestRoutesFollowNodes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace (CI runs as root)")
	}
	name := fmt.Sprintf("petrel-routing-%d", os.Getpid())
	for _, args := range [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "add", "uplink", "type", "veth", "peer", "name", "peer"},
		{"-n", name, "addr", "add", "192.168.77.1/24", "dev", "uplink"},
		{"-n", name, "link", "set", "uplink", "up"},
		{"-n", name, "link", "set", "peer", "up"},
		{"-n", name, "route", "add", "10.99.0.0/16", "via", "192.168.77.9"}, // not ours: must stay
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	nsh, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	cs := fake.NewClientset(node("self", "10.244.0.0/24", "192.168.77.1"), node("n2", "10.244.5.0/24", "192.168.77.2"),
		node("n3", "10.244.6.0/24", ""))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := New(Config{Self: "self", Handle: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx, informers.NewSharedInformerFactory(cs, 0)); err != nil {
		t.Fatal(err)
	}
	routes := func() map[string]string {
		list, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, rt := range list {
			if rt.Dst != nil && rt.Gw != nil {
				out[rt.Dst.String()] = rt.Gw.String()
			}
		}
		return out
	}
	wait := func(what string, ok func(map[string]string) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(routes()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: routes %v", what, routes())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("route to n2's pods", func(m map[string]string) bool { return m["10.244.5.0/24"] == "192.168.77.2" })
	if m := routes(); m["10.244.0.0/24"] != "" || m["10.244.6.0/24"] != "" {
		t.Errorf("routes for itself or an addressless node: %v", m)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node("n4", "10.244.7.0/24", "192.168.77.4"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("route to a new node", func(m map[string]string) bool { return m["10.244.7.0/24"] == "192.168.77.4" })
	if err := cs.CoreV1().Nodes().Delete(ctx, "n2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("route of a deleted node removed", func(m map[string]string) bool { _, ok := m["10.244.5.0/24"]; return !ok })
	if m := routes(); m["10.99.0.0/16"] != "192.168.77.9" {
		t.Errorf("a route the router did not make was touched: %v", m)
	}
}

func TestModeAndMTU(t *testing.T) {
	for _, c := range []struct {
		flag string
		mode Mode
		mtu  int
	}{{"", ModeAuto, 1450}, {"auto", ModeAuto, 1450}, {"VXLAN", ModeVXLAN, 1450}, {"geneve", ModeGeneve, 1450}, {"disabled", ModeDisabled, 1500}} {
		m, err := ParseMode(c.flag)
		if err != nil || m != c.mode {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", c.flag, m, err, c.mode)
		}
		if got := PodMTU(1500, m); got != c.mtu {
			t.Errorf("PodMTU(1500, %s) = %d, want %d", m, got, c.mtu)
		}
	}
	if _, err := ParseMode("ipip"); err == nil {
		t.Error("ParseMode accepted ipip")
	}
}
