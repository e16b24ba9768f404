package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/bench"
	"github.com/petrel-project/petrel/test/images"
	"github.com/petrel-project/petrel/topology"
)

// petrelCluster is a `petrel up --nodes 2`-shaped cluster: `petrel server`
// in the root namespace, a `petrel node` in each node namespace.
type petrelCluster struct {
	topo  *topology.Topology
	sp    *bench.Server
	dirs  []string
	procs []*topology.Process
}

// stop stops the nodes, removes their pods, pins and namespaces (as petrel
// up --nodes does on SIGTERM) and stops the server.
func (c *petrelCluster) stop(petrel string) error {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		if p != nil {
			wg.Add(1)
			go func() { defer wg.Done(); p.Signal(syscall.SIGTERM, 30*time.Second) }()
		}
	}
	wg.Wait()
	dirOf := map[string]string{}
	for i, n := range c.topo.Nodes {
		dirOf[n.Name] = c.dirs[i]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := c.topo.Teardown(ctx, petrel, func(n topology.Node) string { return dirOf[n.Name] })
	if c.sp != nil {
		c.sp.Stop()
	}
	return err
}

// runPetrelMode starts the cluster (nodes with --tunnel tunnel when it is
// set; joined with the server's token when join is set), puts a pod on
// each node, measures node to node and pod to pod, and removes it all. It
// returns the nodes' join times when they joined with a token.
func runPetrelMode(ctx context.Context, o Options, progress func(string, ...any), label, tunnel string, join bool,
	dir, archive string) (_ modeFigures, joins []time.Duration, err error) {
	topo, err := topology.Build(topologySpec(o))
	if err != nil {
		return modeFigures{}, nil, err
	}
	c := &petrelCluster{topo: topo, procs: make([]*topology.Process, len(topo.Nodes))}
	for _, n := range topo.Nodes {
		c.dirs = append(c.dirs, filepath.Join(dir, n.Name))
	}
	defer func() {
		progress("%s: stopping the nodes and removing the topology", label)
		if serr := c.stop(o.Petrel); serr != nil && err == nil {
			err = fmt.Errorf("cleanup: %w", serr)
		}
	}()
	progress("%s: starting petrel server", label)
	c.sp, err = bench.StartServer(ctx, o.Petrel, "--bind-address", "0.0.0.0", "--advertise-address", topo.ServerAddress.String())
	if err != nil {
		return modeFigures{}, nil, err
	}
	_, cs, err := c.sp.Client()
	if err != nil {
		return modeFigures{}, nil, err
	}
	port, err := securePort(c.sp)
	if err != nil {
		return modeFigures{}, nil, err
	}
	server := fmt.Sprintf("https://%s", netip.AddrPortFrom(topo.ServerAddress, port))
	var token string
	if join {
		b, err := os.ReadFile(filepath.Join(c.sp.Dir, "node-token"))
		if err != nil {
			return modeFigures{}, nil, fmt.Errorf("the server's join token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	starts := make([]time.Time, len(topo.Nodes))
	for i, n := range topo.Nodes {
		if err := os.MkdirAll(filepath.Join(c.dirs[i], "images"), 0o755); err != nil {
			return modeFigures{}, nil, err
		}
		// The node imports <data-dir>/images/*.tar at start.
		if err := copyFile(archive, filepath.Join(c.dirs[i], "images", "testserver.tar")); err != nil {
			return modeFigures{}, nil, err
		}
		args := append(n.NodeArgs(c.dirs[i]), "--server", server)
		if join {
			args = append(args, "--token", token)
		} else {
			args = append(args, "--kubeconfig", c.sp.Kubeconfig)
		}
		if tunnel != "" {
			args = append(args, "--tunnel", tunnel)
		}
		progress("%s: starting node %s (%s)", label, n.Name, n.Address)
		starts[i] = time.Now()
		if c.procs[i], err = topology.StartOnNode(n, filepath.Join(c.dirs[i], "node.log"), o.Petrel, args...); err != nil {
			return modeFigures{}, nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	ready, err := waitNodesReady(wctx, cs, topo.Nodes, c.procs)
	if err != nil {
		return modeFigures{}, nil, err
	}
	if join {
		for i := range topo.Nodes {
			joins = append(joins, ready[i].Sub(starts[i]))
		}
	}
	pods, err := startBenchPods(wctx, cs, topo.Nodes)
	if err != nil {
		return modeFigures{}, nil, err
	}
	nodePath := netPath{name: "node_to_node",
		from: netEndpoint{netns: topo.Nodes[0].Netns, cgroup: topo.Nodes[0].DaemonCgroup, addr: topo.Nodes[0].Address},
		to:   netEndpoint{netns: topo.Nodes[1].Netns, cgroup: topo.Nodes[1].DaemonCgroup, addr: topo.Nodes[1].Address}}
	podPath := netPath{name: "pod_to_pod",
		from: netEndpoint{netns: pods[0].netns, cgroup: topo.Nodes[0].DaemonCgroup, addr: pods[0].addr},
		to:   netEndpoint{netns: pods[1].netns, cgroup: topo.Nodes[1].DaemonCgroup, addr: pods[1].addr}}
	m, err := measureMode(ctx, o, progress, label, nodePath, podPath)
	return m, joins, err
}

// securePort is the API server's port, as bench.StartPetrel gave it.
func securePort(sp *bench.Server) (uint16, error) {
	args := sp.Cmd.Args
	for i := len(args) - 2; i >= 0; i-- { // the last one counts
		if args[i] == "--secure-port" {
			p, err := strconv.ParseUint(args[i+1], 10, 16)
			return uint16(p), err
		}
	}
	return 0, errors.New("petrel server was started without --secure-port")
}

// waitNodesReady waits until every node is Ready with a podCIDR and
// returns when each was first seen so (polled every 100 ms).
func waitNodesReady(ctx context.Context, cs kubernetes.Interface, nodes []topology.Node, procs []*topology.Process) ([]time.Time, error) {
	ready := make([]time.Time, len(nodes))
	for {
		for i, n := range nodes {
			select {
			case <-procs[i].Exited():
				return nil, fmt.Errorf("petrel node %s exited (log: %s)", n.Name, procs[i].Log)
			default:
			}
			if !ready[i].IsZero() {
				continue
			}
			nd, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil || nd.Spec.PodCIDR == "" {
				continue
			}
			for _, c := range nd.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready[i] = time.Now()
				}
			}
		}
		all := true
		for _, t := range ready {
			all = all && !t.IsZero()
		}
		if all {
			return ready, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nodes not Ready with a podCIDR: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// netPod is a running pod's network namespace and address.
type netPod struct {
	netns string
	addr  netip.Addr
}

// startBenchPods runs a test server pod on each node (spec.nodeName) and
// waits until they run; their network namespaces are the kubelet's
// /run/netns/petrel-<pod uid>.
func startBenchPods(ctx context.Context, cs kubernetes.Interface, nodes []topology.Node) ([]netPod, error) {
	pods := cs.CoreV1().Pods("default")
	for i, n := range nodes {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-net-%d", i), Labels: map[string]string{"bench": "network"}},
			Spec: corev1.PodSpec{NodeName: n.Name, TerminationGracePeriodSeconds: ptr.To(int64(1)), AutomountServiceAccountToken: ptr.To(false),
				Containers: []corev1.Container{{Name: "c", Image: images.TestServer, ImagePullPolicy: corev1.PullNever}}}}
		if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create pod on %s: %w", n.Name, err)
		}
	}
	out := make([]netPod, len(nodes))
	for i := range nodes {
		name := fmt.Sprintf("bench-net-%d", i)
		for {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				addr, err := netip.ParseAddr(p.Status.PodIP)
				if err != nil {
					return nil, fmt.Errorf("pod %s's IP %q: %w", name, p.Status.PodIP, err)
				}
				ns := filepath.Join("/run/netns", "petrel-"+string(p.UID))
				if _, err := os.Stat(ns); err != nil {
					return nil, fmt.Errorf("pod %s runs but its network namespace is not where the kubelet puts it: %w", name, err)
				}
				out[i] = netPod{netns: ns, addr: addr}
				break
			}
			if err == nil && p.Status.Phase == corev1.PodFailed {
				return nil, fmt.Errorf("pod %s failed: %s", name, p.Status.Message)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("pod %s not running (last error %v): %w", name, err, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return out, nil
}

// copyFile copies src to dst (a hard link where it can).
func copyFile(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return errors.Join(out.Close())
}
