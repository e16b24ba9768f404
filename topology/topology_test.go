package topology

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

func TestPlanRejectsWhatCannotBeBuilt(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Name: "toolong1", Nodes: 1, Segments: 1}, "1-6 characters"},
		{Spec{Name: "Up", Nodes: 1, Segments: 1}, "1-6 characters"},
		{Spec{Name: "ok", Nodes: 0, Segments: 1}, "use 1 to"},
		{Spec{Name: "ok", Nodes: 3, Segments: 3}, "use 1 or 2"},
		{Spec{Name: "ok", Nodes: 1, Segments: 2}, "every segment needs a node"},
	} {
		if _, err := Plan(c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Plan(%+v) = %v, want an error saying %q", c.spec, err, c.want)
		}
	}
}

func TestPlanSpreadsNodesOverSegmentsInOrder(t *testing.T) {
	topo, err := Plan(Spec{Name: "ab", Nodes: 3, Segments: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		seg  int
		addr string
	}{{"ab-n0", 0, "198.51.100.10"}, {"ab-n1", 0, "198.51.100.11"}, {"ab-n2", 1, "203.0.113.12"}}
	for i, w := range want {
		n := topo.Nodes[i]
		if n.Name != w.name || n.Segment != w.seg || n.Address != netip.MustParseAddr(w.addr) || n.Netns != "/run/netns/"+w.name {
			t.Errorf("node %d = %+v, want %+v", i, n, w)
		}
		if n.PodCgroup != "ab-n"+fmt.Sprint(i)+"/pods" || !strings.HasPrefix(n.DaemonCgroup, n.Cgroup+"/") {
			t.Errorf("node %d cgroups %q %q %q", i, n.Cgroup, n.PodCgroup, n.DaemonCgroup)
		}
	}
	if topo.ServerAddress != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("server address %s", topo.ServerAddress)
	}
}

// TestBuildConnectsSegmentsAndRemoveLeavesNothing builds two segments for
// real and checks every path a cluster needs: node to node on one segment
// and across the router, the root namespace (the API server) to a node on
// the far segment, an outside host to a node; then that Remove leaves no
// namespace, link or cgroup behind.
func TestBuildConnectsSegmentsAndRemoveLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, bridges and cgroups")
	}
	name := fmt.Sprintf("t%05x", os.Getpid()&0xfffff)
	topo, err := Build(Spec{Name: name, Nodes: 3, Segments: 2, Wait: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			_ = topo.Remove()
		}
	})
	host, err := topo.AddHost(1)
	if err != nil {
		t.Fatal(err)
	}
	// A listener in each node's namespace that answers with the node's name.
	for _, n := range topo.Nodes {
		var l net.Listener
		if err := InNetns(n.Name, func() (err error) {
			l, err = net.Listen("tcp", net.JoinHostPort(n.Address.String(), "7000"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func(name string) {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = io.WriteString(c, name)
				c.Close()
			}
		}(n.Name)
	}
	ask := func(from string, dial func(string, string, time.Duration) (net.Conn, error), to Node) {
		t.Helper()
		c, err := dial("tcp", net.JoinHostPort(to.Address.String(), "7000"), 3*time.Second)
		if err != nil {
			t.Errorf("%s → %s: %v", from, to.Name, err)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		got, _ := io.ReadAll(c)
		if string(got) != to.Name {
			t.Errorf("%s → %s: answered %q", from, to.Name, got)
		}
	}
	n0, n1, n2 := topo.Nodes[0], topo.Nodes[1], topo.Nodes[2]
	ask(n0.Name, n0.Dial, n1)
	ask(n0.Name, n0.Dial, n2)
	ask(n2.Name, n2.Dial, n1)
	ask("root", net.DialTimeout, n2)
	hostDial := func(network, addr string, d time.Duration) (c net.Conn, err error) {
		err = InNetns(host.Name, func() error { c, err = net.DialTimeout(network, addr, d); return err })
		return c, err
	}
	ask(host.Name, hostDial, n0)

	if err := topo.Remove(); err != nil {
		t.Fatal(err)
	}
	removed = true
	for _, n := range append(topo.Nodes, Node{Name: host.Name}, Node{Name: name + "-r"}) {
		if _, err := os.Stat(filepath.Join("/run/netns", n.Name)); err == nil {
			t.Errorf("namespace %s left", n.Name)
		}
	}
	links, err := linkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, name) {
			t.Errorf("link %s left", l.Attrs().Name)
		}
	}
	mount, _ := bpfobj.CgroupV2Mount()
	if left, _ := filepath.Glob(filepath.Join(mount, name+"*")); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
}

func TestOwnedNamesAreOnlyTheTopologys(t *testing.T) {
	for s, want := range map[string]bool{"ab-n0": true, "ab-h12": true, "ab-p3": true, "ab-r": true,
		"ab-p": false, "ab-x1": false, "abc-n0": false, "ab-n0x": false, "petrel-1234": false} {
		if got := ownedName("ab", s); got != want {
			t.Errorf("ownedName(ab, %q) = %v, want %v", s, got, want)
		}
	}
}
