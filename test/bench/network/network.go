// Package network is the network suite of petrelctl bench: pod to pod
// across two nodes, natively routed and over VXLAN, against node to node
// and a kernel-only baseline built in the same run.
package network

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/test/bench"
	"github.com/petrel-project/petrel/test/images"
	"github.com/petrel-project/petrel/topology"
)

// Options configure the network suite.
type Options struct {
	// Petrel is the binary of the server and the nodes.
	Petrel string
	// Petrelctl runs the connection workers (bench dataplane-worker).
	Petrelctl string
	// Throughput is the length of each iperf3 run (whole seconds).
	Throughput time.Duration
	// Duration is the length of each connections/s run.
	Duration time.Duration
	// Concurrency is how many clients connect at once in a connections/s
	// run.
	Concurrency int
	// Rounds is how many times each figure is measured (the median is
	// kept); the paths of a topology take turns within a round.
	Rounds int
	// Wait is how long to wait for another multi-node topology on the
	// machine (a test, petrel up --nodes) to go.
	Wait     time.Duration
	Progress io.Writer
}

// networkTopology names the suite's topologies (one at a time).
const networkTopology = "pnb"

// Ports of the suite's servers inside the namespaces.
const (
	iperfPort = 5201
	connPort  = 7000
)

// netEndpoint is where one end of a measured path runs: a network
// namespace, a cgroup (relative to the v2 mount; the node's daemon cgroup,
// under the node's socket LB subtree, so connects pay for its hook as a
// pod's do) and the address it serves on.
type netEndpoint struct {
	netns  string
	cgroup string
	addr   netip.Addr
}

// netPath is one measured path: traffic from one endpoint to the other.
type netPath struct {
	name     string
	from, to netEndpoint
}

// pathStats are one path's medians.
type pathStats struct {
	Gbps, Conns float64
}

// modeFigures are one topology mode's figures: node to node (the limit in
// this geometry) and pod to pod across the nodes, measured in turns.
type modeFigures struct {
	Node, Pod pathStats
}

// command makes a command that runs in the endpoint's namespace (nsenter,
// which changes nothing else), its cgroup, pinned to cpu. Call release
// after Start.
func (e netEndpoint) command(ctx context.Context, cpu int, name string, args ...string) (*exec.Cmd, func(), error) {
	cpu = min(cpu, runtime.NumCPU()-1)
	argv := append([]string{"--net=" + e.netns, "--", "taskset", "-c", strconv.Itoa(cpu), name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	release := func() {}
	if e.cgroup != "" {
		mount, err := bpfobj.CgroupV2Mount()
		if err != nil {
			return nil, nil, err
		}
		fd, err := syscall.Open(filepath.Join(mount, e.cgroup), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("open cgroup %s: %w", e.cgroup, err)
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
		release = func() { syscall.Close(fd) }
	}
	return cmd, release, nil
}

// iperf measures TCP throughput of one iperf3 stream on path p: the server
// on CPU 1, the client on CPU 0.
func iperf(ctx context.Context, o Options, p netPath) (float64, error) {
	srv, release, err := p.to.command(ctx, 1, "iperf3", "-s", "-1", "-B", p.to.addr.String(), "-p", strconv.Itoa(iperfPort))
	if err != nil {
		return 0, err
	}
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	err = srv.Start()
	release()
	if err != nil {
		return 0, fmt.Errorf("start iperf3 server for %s: %w", p.name, err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	secs := strconv.Itoa(max(1, int(o.Throughput.Round(time.Second)/time.Second)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, release, err := p.from.command(ctx, 0, "iperf3", "-c", p.to.addr.String(), "-p", strconv.Itoa(iperfPort), "-t", secs, "-J")
		if err != nil {
			return 0, err
		}
		var out, stderr bytes.Buffer
		cl.Stdout, cl.Stderr = &out, &stderr
		runErr := cl.Start()
		release()
		if runErr == nil {
			runErr = cl.Wait()
		}
		gbps, err := bench.ParseIperf(out.Bytes())
		if err == nil {
			return gbps, nil
		}
		if errors.Is(err, bench.ErrIperfConnect) && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond) // the server is not listening yet
			continue
		}
		_ = srv.Process.Kill()
		_ = srv.Wait() // its output is complete now
		return 0, fmt.Errorf("iperf3 on %s: %w (exit: %v; %s; server: %s)", p.name, err, runErr, strings.TrimSpace(stderr.String()), strings.TrimSpace(srvOut.String()))
	}
}

// connects measures connections/s on path p: connect, one byte each way,
// close with SO_LINGER 0, from o.Concurrency clients for o.Duration (the
// dataplane suite's worker, server on CPU 1, clients on CPU 0).
func connects(ctx context.Context, o Options, p netPath, d time.Duration) (float64, error) {
	target := netip.AddrPortFrom(p.to.addr, connPort).String()
	srv, release, err := p.to.command(ctx, 1, o.Petrelctl, "bench", "dataplane-worker", "--role", "server", "--listen", target)
	if err != nil {
		return 0, err
	}
	stdout, err := srv.StdoutPipe()
	if err != nil {
		release()
		return 0, err
	}
	srv.Stderr = os.Stderr
	err = srv.Start()
	release()
	if err != nil {
		return 0, fmt.Errorf("start the connection server for %s: %w", p.name, err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		return 0, fmt.Errorf("connection server for %s did not start: %q", p.name, line)
	}
	cl, release, err := p.from.command(ctx, 0, o.Petrelctl, "bench", "dataplane-worker", "--role", "client", "--mode", "tcp",
		"--target", target, "--concurrency", strconv.Itoa(o.Concurrency), "--duration", d.String())
	if err != nil {
		return 0, err
	}
	var out bytes.Buffer
	cl.Stdout, cl.Stderr = &out, os.Stderr
	err = cl.Start()
	release()
	if err == nil {
		err = cl.Wait()
	}
	if err != nil {
		return 0, fmt.Errorf("connection client on %s: %w", p.name, err)
	}
	var r bench.WorkerResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return 0, fmt.Errorf("connection client output %q: %w", out.Bytes(), err)
	}
	if r.Ops == 0 || r.Errors > r.Ops/100 {
		return 0, fmt.Errorf("connections on %s: %d ok, %d errors: the path does not work", p.name, r.Ops, r.Errors)
	}
	return float64(r.Ops) / r.Seconds, nil
}

// measureMode measures node to node and pod to pod in turns, o.Rounds
// times (the order flips every round, so a drift of the machine's load
// falls on both), and keeps the medians.
func measureMode(ctx context.Context, o Options, progress func(string, ...any), label string, node, pod netPath) (modeFigures, error) {
	// Warm up: neighbour entries, page cache, CPU clocks.
	for _, p := range []netPath{node, pod} {
		if _, err := connects(ctx, o, p, time.Second); err != nil {
			return modeFigures{}, err
		}
	}
	samples := map[string][]float64{}
	for r := range max(o.Rounds, 1) {
		progress("%s: round %d of %d", label, r+1, max(o.Rounds, 1))
		paths := []netPath{node, pod}
		if r%2 == 1 {
			paths[0], paths[1] = pod, node
		}
		for _, p := range paths {
			g, err := iperf(ctx, o, p)
			if err != nil {
				return modeFigures{}, err
			}
			samples[p.name+"/gbps"] = append(samples[p.name+"/gbps"], g)
		}
		for _, p := range paths {
			c, err := connects(ctx, o, p, o.Duration)
			if err != nil {
				return modeFigures{}, err
			}
			samples[p.name+"/conns"] = append(samples[p.name+"/conns"], c)
		}
	}
	m := modeFigures{
		Node: pathStats{Gbps: bench.Median(samples[node.name+"/gbps"]), Conns: bench.Median(samples[node.name+"/conns"])},
		Pod:  pathStats{Gbps: bench.Median(samples[pod.name+"/gbps"]), Conns: bench.Median(samples[pod.name+"/conns"])},
	}
	progress("%s: node to node %.2f Gbit/s %.0f connects/s; pod to pod %.2f Gbit/s %.0f connects/s",
		label, m.Node.Gbps, m.Node.Conns, m.Pod.Gbps, m.Pod.Conns)
	return m, nil
}

// share is a over b, 0 when b is.
func share(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// networkFigures are everything the suite measured; nil modes were not run.
type networkFigures struct {
	KernelRoutes, KernelVXLAN modeFigures
	Native, Overlay           *modeFigures
	// Joins are token-to-Ready times of the nodes that joined.
	Joins []time.Duration
}

// networkRows writes the suite's rows: Petrel against node to node (the
// limit) and against the kernel-only baselines, and the baselines' own
// ratios for reference.
func networkRows(rep *bench.Report, fig networkFigures) {
	const gbit, conns = "Gbit/s", "connects/s"
	type mode struct {
		name   string
		petrel *modeFigures
		kernel modeFigures
		kname  string
		goal   float64
	}
	for _, m := range []mode{
		{"native", fig.Native, fig.KernelRoutes, "kernel_routes_pod_to_pod", 0.95},
		{"vxlan", fig.Overlay, fig.KernelVXLAN, "kernel_vxlan_pod_to_pod", 0.85},
	} {
		if m.petrel == nil {
			continue
		}
		p := *m.petrel
		rep.AddRatio("pod_to_pod_tcp_throughput_"+m.name, gbit, p.Pod.Gbps, "node_to_node", p.Node.Gbps, "higher", m.goal)
		rep.AddRatio("pod_to_pod_connects_"+m.name, conns, p.Pod.Conns, "node_to_node", p.Node.Conns, "higher", m.goal)
		rep.AddRatio("pod_to_pod_connects_"+m.name, conns, p.Pod.Conns, m.kname, m.kernel.Pod.Conns, "higher", 1.1)
		rep.AddRatio("pod_to_pod_tcp_throughput_"+m.name, gbit, p.Pod.Gbps, m.kname, m.kernel.Pod.Gbps, "higher", 0)
		// The kernel-only baseline ran in another topology minutes apart:
		// on a shared machine the load moves between the two. Each
		// topology's pod-to-pod over its own node-to-node cancels that.
		rep.AddRatio("pod_to_pod_connects_"+m.name+"_over_node_to_node", "x", share(p.Pod.Conns, p.Node.Conns),
			m.kname+"_over_node_to_node", share(m.kernel.Pod.Conns, m.kernel.Node.Conns), "higher", 0)
	}
	for _, k := range []struct {
		name string
		m    modeFigures
	}{{"kernel_routes", fig.KernelRoutes}, {"kernel_vxlan", fig.KernelVXLAN}} {
		rep.AddRatio(k.name+"_pod_to_pod_tcp_throughput", gbit, k.m.Pod.Gbps, "node_to_node", k.m.Node.Gbps, "higher", 0)
		rep.AddRatio(k.name+"_pod_to_pod_connects", conns, k.m.Pod.Conns, "node_to_node", k.m.Node.Conns, "higher", 0)
	}
	if len(fig.Joins) > 0 {
		rep.Add(fmt.Sprintf("node_join_token_to_ready_p50_of_%d", len(fig.Joins)), "ms", bench.Millis(bench.Percentile(fig.Joins, 50)), "lower", nil)
	}
}

// Run runs the network suite: pod to pod across two nodes of a
// `petrel up --nodes 2`-shaped cluster (package topology), natively routed
// and, where petrel node has --tunnel, through VXLAN, against node to node
// in the same topology and against a kernel-only baseline (Linux routes, a
// kernel VXLAN device with FDB entries, as flannel does) built in the same
// run; TCP throughput with iperf3 and short connections per second.
func Run(ctx context.Context, o Options) (*bench.Report, error) {
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench network: "+format+"\n", args...)
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the network suite builds network namespaces and runs nodes: run it as root")
	}
	for _, tool := range []string{"nsenter", "taskset", "iperf3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (make deps installs it)", tool)
		}
	}
	if _, err := os.Stat(o.Petrel); err != nil {
		return nil, fmt.Errorf("the petrel binary (build it with make build, or pass --petrel): %w", err)
	}
	help, err := exec.CommandContext(ctx, o.Petrel, "node", "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s node --help: %w", o.Petrel, err)
	}
	hasTunnel, hasToken := bytes.Contains(help, []byte("--tunnel")), bytes.Contains(help, []byte("--token"))

	rep := bench.NewReport("network")
	rep.Note("load average at start: " + loadAverage())
	var fig networkFigures

	progress("kernel-only baseline: 2 node namespaces, a pod namespace on each, no Petrel")
	if fig.KernelRoutes, fig.KernelVXLAN, err = runKernelBaseline(ctx, o, progress); err != nil {
		return nil, fmt.Errorf("kernel-only baseline: %w", err)
	}

	work, err := os.MkdirTemp("", "petrel-bench-network-")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.RemoveAll(work)
		}
	}()
	progress("building the test image")
	archive, err := buildTestImage(ctx, filepath.Join(work, "image"))
	if err != nil {
		return nil, err
	}
	for _, run := range []struct {
		label, tunnel string
		dst           **modeFigures
	}{{"petrel native", "", &fig.Native}, {"petrel vxlan", "vxlan", &fig.Overlay}} {
		if run.tunnel != "" && !hasTunnel {
			rep.Note(fmt.Sprintf("%s rows skipped: this petrel node has no --tunnel flag (the overlay is not in this build)", run.label))
			progress("%s: skipped (petrel node has no --tunnel)", run.label)
			continue
		}
		m, joins, err := runPetrelMode(ctx, o, progress, run.label, run.tunnel, hasToken, filepath.Join(work, strings.ReplaceAll(run.label, " ", "-")), archive)
		if err != nil {
			keep = true
			return nil, fmt.Errorf("%s: %w (logs kept in %s)", run.label, err, work)
		}
		*run.dst = &m
		fig.Joins = append(fig.Joins, joins...)
	}
	if !hasToken {
		rep.Note("node join time skipped: this petrel node has no --token flag (joining with a token is not in this build)")
	}
	networkRows(rep, fig)
	rep.Note("load average at end: " + loadAverage())
	return rep, nil
}

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// buildTestImage builds the test server image (with the Go toolchain, as
// the pods suite does); where go is not on PATH, /usr/local/go/bin is
// tried.
func buildTestImage(ctx context.Context, dir string) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		if _, serr := os.Stat("/usr/local/go/bin/go"); serr == nil {
			os.Setenv("PATH", "/usr/local/go/bin"+string(os.PathListSeparator)+os.Getenv("PATH"))
		}
	}
	return images.BuildTestServer(ctx, dir)
}

// topologySpec is the suite's topology: two nodes on one segment.
func topologySpec(o Options) topology.Spec {
	return topology.Spec{Name: networkTopology, Nodes: 2, Segments: 1, Wait: o.Wait}
}
