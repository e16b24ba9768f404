package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/images"
)

// TestNodePortFromAnotherHost reaches a NodePort from a network namespace
// outside the node (another host on a veth "wire"): tc_nodeport DNATs to the
// pods, tc_pod NATs the replies back, over TCP and UDP.
func TestNodePortFromAnotherHost(t *testing.T) {
	requireKubectl(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 is not installed")
	}
	id := os.Getpid() % 100000
	outside := fmt.Sprintf("petrel-out-%d", id)
	hostIf, outIf := fmt.Sprintf("pnp%d", id), fmt.Sprintf("pnp%do", id)
	subnet := 1 + os.Getpid()%250
	nodeIP, clientIP := fmt.Sprintf("192.168.%d.1", subnet), fmt.Sprintf("192.168.%d.2", subnet)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	run("netns", "add", outside)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", outside).Run() })
	run("link", "add", hostIf, "type", "veth", "peer", "name", outIf, "netns", outside)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	run("addr", "add", nodeIP+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", outside, "addr", "add", clientIP+"/30", "dev", outIf)
	run("-n", outside, "link", "set", outIf, "up")
	run("-n", outside, "link", "set", "lo", "up")

	u := startPodCluster(t, "--nodeport-interfaces", hostIf)
	allowPrivileged(t, u.Server, "default") // a pod with a hostPort
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubectl(t, u.Server, "", "create", "deployment", "np", "--image="+images.TestServer, "--replicas=2")
	kubectl(t, u.Server, "", "rollout", "status", "deployment/np", "--timeout=90s")
	kubectl(t, u.Server, `apiVersion: v1
kind: Service
metadata: {name: np}
spec:
  type: NodePort
  selector: {app: np}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
  - {name: echo, port: 9000, targetPort: 9000, protocol: UDP}
`, "apply", "-f", "-")
	svc, err := u.Clientset().CoreV1().Services("default").Get(ctx, "np", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	httpPort, udpPort := svc.Spec.Ports[0].NodePort, svc.Spec.Ports[1].NodePort
	pods, err := u.Clientset().CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=np"})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range pods.Items {
		names[p.Name] = true
	}

	heard := map[string]int{}
	poll(t, "NodePort over TCP from the other host", 30*time.Second, func() error {
		for i := 0; i < 20; i++ {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", outside, "curl", "-sS", "--max-time", "3",
				fmt.Sprintf("http://%s:%d/hostname", nodeIP, httpPort)).CombinedOutput()
			if err != nil || !names[string(out)] {
				return fmt.Errorf("curl = %q (%v)", out, err)
			}
			heard[string(out)]++
		}
		return nil
	})
	if len(heard) != 2 {
		t.Errorf("answers came from %v, want both pods", heard)
	}
	// tc_nodeport counted those connections, their packets and bytes, for
	// the NodePort frontend.
	front := fmt.Sprintf("*:%d/TCP", httpPort)
	conns := serviceCountersBy(t, u, "petrel_service_connections_total", "default", "np", "frontend")[front]
	packets := serviceCountersBy(t, u, "petrel_service_packets_total", "default", "np", "frontend")[front]
	bytes := serviceCountersBy(t, u, "petrel_service_bytes_total", "default", "np", "frontend")[front]
	if answered := float64(heard[pods.Items[0].Name] + heard[pods.Items[1].Name]); conns < answered || packets < 3*conns || bytes < 40*packets {
		t.Errorf("NodePort %s counted %v connections, %v packets, %v bytes for %v answered requests", front, conns, packets, bytes, answered)
	}
	t.Logf("NodePort %s: %v connections, %v packets, %v bytes counted by tc_nodeport", front, conns, packets, bytes)

	// UDP: a connected socket takes only replies from the address it
	// sent to, so an answer proves the reverse NAT.
	poll(t, "NodePort over UDP from the other host", 20*time.Second, func() error {
		return ns.WithNetNSPath("/run/netns/"+outside, func(ns.NetNS) error {
			c, err := net.Dial("udp4", net.JoinHostPort(nodeIP, fmt.Sprint(udpPort)))
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 16)
			n, err := c.Read(buf)
			if err != nil || string(buf[:n]) != "ping" {
				return fmt.Errorf("udp echo %q (%v)", buf[:n], err)
			}
			return nil
		})
	})
	// Network engineers see the flows: client, node port, backend,
	// interface, and a finished connection (curl's FIN went through) marked
	// closing until the node collects it.
	if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", outside, "curl", "-sS", "--max-time", "3",
		fmt.Sprintf("http://%s:%d/hostname", nodeIP, httpPort)).CombinedOutput(); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	out, err := u.Petrelctl(ctx, "bpf", "ct", "nodeport")
	if err != nil || !strings.Contains(out, clientIP+":") || !strings.Contains(out, fmt.Sprintf("%s:%d", nodeIP, httpPort)) || !strings.Contains(out, hostIf) ||
		!strings.Contains(out, "closing") {
		t.Errorf("petrelctl bpf ct nodeport:\n%s (%v)", out, err)
	}
	out, err = u.Petrelctl(ctx, "bpf", "maps")
	if err != nil || !strings.Contains(out, "petrel_np_ct") {
		t.Errorf("petrelctl bpf maps lacks the NodePort conntrack map:\n%s", out)
	}

	t.Run("a pod's hostPort answers on the node's address", func(t *testing.T) {
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hp}
spec:
  containers:
  - name: c
    image: %s
    ports: [{containerPort: 8080, hostPort: 18080, protocol: TCP}]
`, images.TestServer), "apply", "-f", "-")
		poll(t, "hostPort 18080 from the other host", 60*time.Second, func() error {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", outside, "curl", "-sS", "--max-time", "3",
				fmt.Sprintf("http://%s:18080/hostname", nodeIP)).CombinedOutput()
			if err != nil || string(out) != "hp" {
				return fmt.Errorf("curl = %q (%v)", out, err)
			}
			return nil
		})
		kubectl(t, u.Server, "", "delete", "pod", "hp", "--wait=true", "--timeout=60s")
		poll(t, "hostPort 18080 gone with its pod", 30*time.Second, func() error {
			out, err := u.Petrelctl(ctx, "bpf", "lb", "list", "--frontends")
			if err != nil || strings.Contains(out, ":18080/") {
				return fmt.Errorf("still in the maps:\n%s (%v)", out, err)
			}
			return nil
		})
	})

	t.Run("a backend on another node is reached through SNAT", func(t *testing.T) {
		// The "other node" is the outside namespace itself: a server on an
		// address of its own, routed from the node through the wire, and a
		// selectorless Service whose EndpointSlice names it. The request
		// goes out of the interface it came in on, as the node.
		remoteIP := fmt.Sprintf("10.77.%d.10", subnet)
		run("-n", outside, "addr", "add", remoteIP+"/32", "dev", "lo")
		run("route", "add", remoteIP+"/32", "via", clientIP, "dev", hostIf)
		// The kernel's FIB forwards only for an interface that forwards;
		// the setting goes with the test's link.
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+hostIf+"/forwarding", []byte("1"), 0o644); err != nil {
			t.Fatal(err)
		}
		var httpLn net.Listener
		var udp net.PacketConn
		if err := ns.WithNetNSPath("/run/netns/"+outside, func(ns.NetNS) error {
			var err error
			if httpLn, err = net.Listen("tcp4", remoteIP+":8080"); err != nil {
				return err
			}
			udp, err = net.ListenPacket("udp4", remoteIP+":9000")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Fprintf(w, "remote, asked by %s", host)
		})}
		go func() { _ = srv.Serve(httpLn) }()
		defer srv.Close()
		defer udp.Close()
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := udp.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = udp.WriteTo(buf[:n], from)
			}
		}()
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: np-remote}
spec:
  type: NodePort
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
  - {name: echo, port: 9000, targetPort: 9000, protocol: UDP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: np-remote-1
  labels: {kubernetes.io/service-name: np-remote}
addressType: IPv4
endpoints:
- addresses: [%s]
  conditions: {ready: true}
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: echo, port: 9000, protocol: UDP}
`, remoteIP), "apply", "-f", "-")
		svc, err := u.Clientset().CoreV1().Services("default").Get(ctx, "np-remote", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		httpPort, udpPort := svc.Spec.Ports[0].NodePort, svc.Spec.Ports[1].NodePort
		want := "remote, asked by " + nodeIP
		poll(t, "NodePort to a remote backend over TCP", 30*time.Second, func() error {
			for i := 0; i < 5; i++ {
				out, err := exec.CommandContext(ctx, "ip", "netns", "exec", outside, "curl", "-sS", "--max-time", "3",
					fmt.Sprintf("http://%s:%d/", nodeIP, httpPort)).CombinedOutput()
				if err != nil || string(out) != want {
					return fmt.Errorf("curl = %q (%v), want %q", out, err, want)
				}
			}
			return nil
		})
		poll(t, "NodePort to a remote backend over UDP", 20*time.Second, func() error {
			return ns.WithNetNSPath("/run/netns/"+outside, func(ns.NetNS) error {
				c, err := net.Dial("udp4", net.JoinHostPort(nodeIP, fmt.Sprint(udpPort)))
				if err != nil {
					return err
				}
				defer c.Close()
				if _, err := c.Write([]byte("pong")); err != nil {
					return err
				}
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 16)
				n, err := c.Read(buf)
				if err != nil || string(buf[:n]) != "pong" {
					return fmt.Errorf("udp echo %q (%v)", buf[:n], err)
				}
				return nil
			})
		})
		out, err := u.Petrelctl(ctx, "bpf", "ct", "nodeport", "-o", "json")
		if err != nil || !strings.Contains(out, `"snat": "`+nodeIP+":6") || !strings.Contains(out, remoteIP+":8080") {
			t.Errorf("petrelctl bpf ct nodeport does not show the SNATed flow:\n%s (%v)", out, err)
		}

		// External IPs routed to the node: to the local pods, and to the
		// remote backend as the address of the interface they came in on.
		localExt, remoteExt := fmt.Sprintf("10.78.%d.1", subnet), fmt.Sprintf("10.78.%d.2", subnet)
		for _, ip := range []string{localExt, remoteExt} {
			run("-n", outside, "route", "add", ip+"/32", "via", nodeIP)
		}
		kubectl(t, u.Server, `{"spec":{"externalIPs":["`+localExt+`"]}}`, "patch", "service", "np", "--type=merge", "--patch-file=/dev/stdin")
		kubectl(t, u.Server, `{"spec":{"externalIPs":["`+remoteExt+`"]}}`, "patch", "service", "np-remote", "--type=merge", "--patch-file=/dev/stdin")
		poll(t, "an external IP to the local pods", 30*time.Second, func() error {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", outside, "curl", "-sS", "--max-time", "3",
				fmt.Sprintf("http://%s:80/hostname", localExt)).CombinedOutput()
			if err != nil || !names[string(out)] {
				return fmt.Errorf("curl = %q (%v)", out, err)
			}
			return nil
		})
		poll(t, "an external IP to the remote backend", 30*time.Second, func() error {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", outside, "curl", "-sS", "--max-time", "3",
				fmt.Sprintf("http://%s:80/", remoteExt)).CombinedOutput()
			if err != nil || string(out) != want {
				return fmt.Errorf("curl = %q (%v), want %q", out, err, want)
			}
			return nil
		})

		// Maglev, asked for by annotation: the frontends say so, and the
		// local pods still answer (which one is the table's choice).
		kubectl(t, u.Server, "", "annotate", "service", "np", "service.petrel.io/lb-algorithm=maglev")
		poll(t, "the NodePort frontend flagged maglev", 30*time.Second, func() error {
			out, err := u.Petrelctl(ctx, "bpf", "lb", "list", "--frontends")
			if err != nil || !strings.Contains(out, "maglev") {
				return fmt.Errorf("petrelctl bpf lb list --frontends:\n%s (%v)", out, err)
			}
			return nil
		})
		npSvc, err := u.Clientset().CoreV1().Services("default").Get(ctx, "np", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", outside, "curl", "-sS", "--max-time", "3",
				fmt.Sprintf("http://%s:%d/hostname", nodeIP, npSvc.Spec.Ports[0].NodePort)).CombinedOutput()
			if err != nil || !names[string(out)] {
				t.Fatalf("NodePort with Maglev: curl = %q (%v)", out, err)
			}
		}
	})
}
