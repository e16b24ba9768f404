package cni_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/petrel-project/petrel/cni"
	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and veths (CI runs as root)")
	}
}

// buildPlugin builds petrel-cni into a directory libcni searches.
func buildPlugin(t *testing.T) string {
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "petrel-cni"), "../cmd/petrel-cni")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build petrel-cni: %v\n%s", err, out)
	}
	return dir
}

func netnsFor(t *testing.T, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

// forwarding turns IPv4 forwarding on for the test, as a node runs, and
// puts the old value back.
func forwarding(t *testing.T) {
	const knob = "/proc/sys/net/ipv4/ip_forward"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(knob, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0o644) })
}

func TestPluginThroughLibcni(t *testing.T) {
	requireRoot(t)
	pluginDir := buildPlugin(t)
	dataDir := t.TempDir()
	id := fmt.Sprint(os.Getpid())
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"petrel-test-%s",
		"plugins":[{"type":"petrel-cni","podCIDR":"10.250.%d.0/24","dataDir":%q}]}`, id, 100+os.Getpid()%100, dataDir)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, t.TempDir(), nil)
	ctx := context.Background()
	rt := func(container, netns string) *libcni.RuntimeConf {
		return &libcni.RuntimeConf{ContainerID: container, NetNS: netns, IfName: "eth0"}
	}
	add := func(container, netns string) *types100.Result {
		t.Helper()
		res, err := cfg.AddNetworkList(ctx, list, rt(container, netns))
		if err != nil {
			t.Fatalf("ADD %s: %v", container, err)
		}
		r, err := types100.NewResultFromResult(res)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cfg.DelNetworkList(ctx, list, rt(container, netns)) })
		return r
	}
	nsA, nsB := netnsFor(t, "petrel-cni-a-"+id), netnsFor(t, "petrel-cni-b-"+id)
	a, b := add("pod-a-"+id, nsA), add("pod-b-"+id, nsB)
	ipA, ipB := a.IPs[0].Address.IP, b.IPs[0].Address.IP
	if ipA.Equal(ipB) || a.IPs[0].Gateway.String() != "169.254.1.1" {
		t.Fatalf("results: %v and %v", a, b)
	}
	if err := cfg.CheckNetworkList(ctx, list, rt("pod-a-"+id, nsA)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := cfg.GetStatusNetworkList(ctx, list); err != nil {
		t.Errorf("STATUS: %v", err)
	}

	t.Run("pod to pod through the host", func(t *testing.T) {
		forwarding(t)
		var ln net.Listener
		err := ns.WithNetNSPath(nsB, func(ns.NetNS) error {
			var err error
			ln, err = net.Listen("tcp4", net.JoinHostPort(ipB.String(), "8080"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				_, _ = c.Write([]byte("from b"))
				c.Close()
			}
		}()
		var got string
		err = ns.WithNetNSPath(nsA, func(ns.NetNS) error {
			c, err := net.DialTimeout("tcp4", net.JoinHostPort(ipB.String(), "8080"), 3*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			if local := c.LocalAddr().(*net.TCPAddr).IP; !local.Equal(ipA) {
				return fmt.Errorf("connected from %v, want the pod's %v", local, ipA)
			}
			buf := make([]byte, 16)
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := c.Read(buf)
			got = string(buf[:n])
			return err
		})
		if err != nil || got != "from b" {
			t.Fatalf("pod A → pod B: %q, %v", got, err)
		}
	})

	t.Run("a pod reaches itself over loopback and its own address", func(t *testing.T) {
		// Sidecars talk over 127.0.0.1; a pod may also dial its own address.
		for _, addr := range []string{"127.0.0.1", ipA.String()} {
			err := ns.WithNetNSPath(nsA, func(ns.NetNS) error {
				ln, err := net.Listen("tcp4", net.JoinHostPort(addr, "0"))
				if err != nil {
					return err
				}
				defer ln.Close()
				go func() {
					if c, err := ln.Accept(); err == nil {
						_, _ = c.Write([]byte("self"))
						c.Close()
					}
				}()
				c, err := net.DialTimeout("tcp4", ln.Addr().String(), 3*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				buf := make([]byte, 8)
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, err := c.Read(buf)
				if err == nil && string(buf[:n]) != "self" {
					err = fmt.Errorf("read %q", buf[:n])
				}
				return err
			})
			if err != nil {
				t.Errorf("pod A → %s in its own namespace: %v", addr, err)
			}
		}
	})

	t.Run("ADD again after a crash midway keeps the address", func(t *testing.T) {
		// As if a runtime died after the veth was made: the host side is
		// gone, the address is recorded; ADD must mend, not fail or leak.
		if l, err := netlink.LinkByName(cni.HostVethName("pod-b-"+id, "eth0")); err == nil {
			_ = netlink.LinkDel(l)
		}
		again := add("pod-b-"+id, nsB)
		if !again.IPs[0].Address.IP.Equal(ipB) {
			t.Errorf("address changed: %v then %v", ipB, again.IPs[0].Address.IP)
		}
		if err := cfg.CheckNetworkList(ctx, list, rt("pod-b-"+id, nsB)); err != nil {
			t.Errorf("CHECK after repair: %v", err)
		}
	})

	t.Run("DEL twice, DEL of a gone namespace", func(t *testing.T) {
		nsC := netnsFor(t, "petrel-cni-c-"+id)
		add("pod-c-"+id, nsC)
		_ = exec.Command("ip", "netns", "del", "petrel-cni-c-"+id).Run()
		for i := range 2 {
			if err := cfg.DelNetworkList(ctx, list, rt("pod-c-"+id, nsC)); err != nil {
				t.Errorf("DEL %d: %v", i+1, err)
			}
		}
		files, _ := os.ReadDir(filepath.Join(dataDir, "networks", list.Name))
		for _, f := range files {
			if b, _ := os.ReadFile(filepath.Join(dataDir, "networks", list.Name, f.Name())); strings.HasPrefix(string(b), "pod-c-") {
				t.Errorf("address %s still held after DEL", f.Name())
			}
		}
	})

	t.Run("GC releases what the runtime no longer knows", func(t *testing.T) {
		err := cfg.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "pod-b-" + id, IfName: "eth0"}}})
		if err != nil {
			t.Fatalf("GC: %v", err)
		}
		if _, err := netlink.LinkByName(cni.HostVethName("pod-a-"+id, "eth0")); err == nil {
			t.Error("pod A's veth survived GC")
		}
		if err := cfg.CheckNetworkList(ctx, list, rt("pod-b-"+id, nsB)); err != nil {
			t.Errorf("pod B broken by GC: %v", err)
		}
	})
}

// setForwarding sets IPv4 forwarding for the test and puts it back.
func setForwarding(t *testing.T, v string) {
	const knob = "/proc/sys/net/ipv4/ip_forward"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(knob, []byte(v), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0o644) })
}

// TestSameNodePodsByRedirect: with tc_pod loaded, a pod reaches another pod
// on the node even with the host's forwarding off, which only
// bpf_redirect_peer can do.
func TestSameNodePodsByRedirect(t *testing.T) {
	requireRoot(t)
	pluginDir := buildPlugin(t)
	id := fmt.Sprint(os.Getpid())
	pinDir := filepath.Join(bpfobj.BPFFSRoot, "petrel-cni-test-"+id)
	if err := bpfobj.LoadPodProgram(pinDir); err != nil {
		t.Fatalf("load tc_pod: %v", err)
	}
	t.Cleanup(func() { _ = bpfobj.Remove(pinDir) })
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"petrel-redirect-%s",
		"plugins":[{"type":"petrel-cni","podCIDR":"10.251.%d.0/24","dataDir":%q,"pinDir":%q}]}`, id, os.Getpid()%200, t.TempDir(), pinDir)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, t.TempDir(), nil)
	ctx := context.Background()
	ips := map[string]net.IP{}
	for _, pod := range []string{"d", "e"} {
		netns := netnsFor(t, "petrel-cni-"+pod+"-"+id)
		rt := &libcni.RuntimeConf{ContainerID: "pod-" + pod + "-" + id, NetNS: netns, IfName: "eth0"}
		res, err := cfg.AddNetworkList(ctx, list, rt)
		if err != nil {
			t.Fatalf("ADD %s: %v", pod, err)
		}
		t.Cleanup(func() { _ = cfg.DelNetworkList(ctx, list, rt) })
		r, _ := types100.NewResultFromResult(res)
		ips[pod] = r.IPs[0].Address.IP
	}
	setForwarding(t, "0")

	var ln net.Listener
	if err := ns.WithNetNSPath("/run/netns/petrel-cni-e-"+id, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(ips["e"].String(), "8080"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("from e"))
			c.Close()
		}
	}()
	var got string
	err = ns.WithNetNSPath("/run/netns/petrel-cni-d-"+id, func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(ips["e"].String(), "8080"), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 16)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		got = string(buf[:n])
		return err
	})
	if err != nil || got != "from e" {
		t.Fatalf("pod d → pod e with forwarding off: %q, %v", got, err)
	}
}
