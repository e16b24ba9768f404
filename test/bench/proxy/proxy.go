// Package proxy is the proxy suite of petrelctl bench: petrel node's CPU
// and time for a bulk load of Services against kube-proxy (iptables) on the
// same load.
package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	petrelruntime "github.com/petrel-project/petrel/dataplane/runtime"
	"github.com/petrel-project/petrel/test/bench"
)

// Options configure the proxy suite: a bulk load of Services into one
// API server, watched by a real `petrel node` and, when given, by a real
// kube-proxy in iptables mode.
type Options struct {
	Petrel string // the petrel binary
	// KubeProxy is a kube-proxy binary for the baseline; empty: not measured.
	KubeProxy string
	Services  int // Services created, each with one EndpointSlice
	Workers   int // concurrent clients of the load
	// CPUProfile, when set, is where a CPU profile of `petrel node` is
	// written: the node is started with --profiling and profiled for
	// CPUProfileSeconds from just before the first create. The sampling
	// costs the node a little CPU, so a profiled run's figures are not
	// the ones to report.
	CPUProfile        string
	CPUProfileSeconds int
	Progress          io.Writer
}

// bulkResult is what one proxy did with one bulk load.
type bulkResult struct {
	cpu  float64       // CPU-seconds from just before the load until every Service was programmed
	load time.Duration // first create to last create
	lag  time.Duration // last create to every Service programmed
	// p50 and p99 of the proxy's network_programming_duration_seconds over
	// the load, in seconds; NaN when it has none.
	p50, p99 float64
	rssMB    float64
}

const (
	bulkNamespace = "bench-bulk"
	// kubeProxyNodeIP is the kube-proxy's node address, on a link in its
	// own network namespace.
	kubeProxyNodeIP = "10.251.0.2"
)

// Run measures the service proxy's CPU for a bulk load of Services:
// a fresh `petrel server` and a `petrel node` (pods off, its socket load
// balancer on a throw-away cgroup) take o.Services Services, and the node's
// CPU-seconds until its maps hold them all are reported; a kube-proxy, when
// given, takes the same load from another fresh server in its own network
// namespace.
func Run(ctx context.Context, o Options) (*bench.Report, error) {
	progress := func(format string, args ...interface{}) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench proxy: "+format+"\n", args...)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the proxy suite needs root (BPF, cgroups, network namespaces)")
	}
	if o.Services < 1 || o.Workers < 1 {
		return nil, fmt.Errorf("--services and --workers must be at least 1")
	}
	if o.KubeProxy != "" {
		for _, tool := range []string{"ip", "iptables"} {
			if _, err := exec.LookPath(tool); err != nil {
				return nil, fmt.Errorf("%s is not installed (make deps installs it); the kube-proxy baseline needs it", tool)
			}
		}
	}
	rep := bench.NewReport("proxy")
	progress("petrel node: starting petrel server and node, then %d Services with %d workers", o.Services, o.Workers)
	ours, err := runPetrelBulk(ctx, o, progress)
	if err != nil {
		return nil, fmt.Errorf("petrel node: %w", err)
	}
	progress("petrel node: %.1f CPU-s, all programmed %.2f s after the last create", ours.cpu, ours.lag.Seconds())
	var base *bulkResult
	if o.KubeProxy == "" {
		progress("no kube-proxy binary (--kube-proxy, or $CONFORMANCE_DIR/bin/kube-proxy from ../shared/conformance/build.sh peers): the baseline was NOT measured")
	} else {
		progress("kube-proxy: starting petrel server and %s (iptables mode, own network namespace), then the same load", o.KubeProxy)
		kp, err := runKubeProxyBulk(ctx, o, progress)
		if err != nil {
			return nil, fmt.Errorf("kube-proxy baseline: %w", err)
		}
		progress("kube-proxy: %.1f CPU-s (with its iptables children), all programmed %.2f s after the last create", kp.cpu, kp.lag.Seconds())
		base = &kp
	}

	name := func(s string) string { return fmt.Sprintf("%s_%d_services", s, o.Services) }
	if base != nil {
		rep.AddRatio(name("bulk_load_proxy_cpu"), "CPU-s", ours.cpu, "kube_proxy_iptables", base.cpu, "lower", 1)
		rep.AddRatio(name("bulk_load_programmed_after_last_create"), "s", ours.lag.Seconds(), "kube_proxy_iptables", base.lag.Seconds(), "lower", 0)
	} else {
		rep.Add(name("bulk_load_proxy_cpu"), "CPU-s", ours.cpu, "lower", nil)
		rep.Add(name("bulk_load_programmed_after_last_create"), "s", ours.lag.Seconds(), "lower", nil)
	}
	rep.Add(name("bulk_load_duration"), "s", ours.load.Seconds(), "lower", nil)
	if !math.IsNaN(ours.p50) {
		rep.Add(name("bulk_load_network_programming_p50"), "s", ours.p50, "lower", nil)
		rep.Add(name("bulk_load_network_programming_p99"), "s", ours.p99, "lower", nil)
	}
	rep.Add(name("node_rss_after_bulk_load"), "MB", ours.rssMB, "lower", nil)
	return rep, nil
}

// runPetrelBulk runs the load against a `petrel node` confined like a test
// node (test/cluster/node.go) and removes all it made, also on failure.
func runPetrelBulk(ctx context.Context, o Options, progress func(string, ...interface{})) (res bulkResult, err error) {
	sp, err := bench.StartServer(ctx, o.Petrel)
	if err != nil {
		return res, err
	}
	defer sp.Stop()
	_, cs, err := sp.Client()
	if err != nil {
		return res, err
	}
	n, err := startBenchNode(ctx, o.Petrel, sp.Kubeconfig, o.CPUProfile != "")
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (node log kept at %s)", err, bench.KeepLog(n.log))
		}
		if cerr := n.stop(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	maps, err := bpfobj.OpenPinned(n.pinDir)
	if err != nil {
		return res, err
	}
	defer maps.Close()
	// Each of the load's Services has one port and one endpoint, so one
	// backend entry: the maps hold them all when N more backends are there.
	count := func() (int, error) { return bpfobj.CountEntries(maps.Backends) }
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", n.metricsPort)
	before, err := scrapeHistogram(ctx, metrics, "network_programming_duration_seconds")
	if err != nil {
		return res, err
	}
	var profiled chan error
	onStart := func() {}
	if o.CPUProfile != "" {
		profiled = make(chan error, 1)
		onStart = func() {
			go func() {
				profiled <- bench.SaveCPUProfile(ctx, fmt.Sprintf("http://127.0.0.1:%d", n.metricsPort), o.CPUProfileSeconds, o.CPUProfile)
			}()
		}
	}
	if res, err = measureBulk(ctx, o, cs, n.cmd.Process.Pid, count, 200*time.Millisecond, onStart, progress); err != nil {
		return res, err
	}
	if profiled != nil {
		if err := <-profiled; err != nil {
			return res, err
		}
		progress("petrel node: CPU profile of %d s from the first create in %s", o.CPUProfileSeconds, o.CPUProfile)
	}
	after, err := scrapeHistogram(ctx, metrics, "network_programming_duration_seconds")
	if err != nil {
		return res, err
	}
	res.p50, res.p99 = after.minus(before).quantile(0.5), after.minus(before).quantile(0.99)
	return res, nil
}

// measureBulk waits for the proxy (pid) to go quiet, creates the Services
// and waits, asking count every poll, until the maps or rules hold all of
// them (count grew by N). onStart runs just before the first create.
func measureBulk(ctx context.Context, o Options, cs kubernetes.Interface, pid int, count func() (int, error), poll time.Duration,
	onStart func(), progress func(string, ...interface{})) (bulkResult, error) {
	var res bulkResult
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bulkNamespace}}, metav1.CreateOptions{}); err != nil {
		return res, fmt.Errorf("creating namespace %s: %w", bulkNamespace, err)
	}
	bench.WaitQuiet(ctx, pid, progress)
	base, err := count()
	if err != nil {
		return res, fmt.Errorf("counting programmed Services: %w", err)
	}
	cpu0, err := bench.ProcCPUTicks(pid)
	if err != nil {
		return res, err
	}
	onStart()
	start := time.Now()
	if err := bench.RunEach(o.Workers, o.Services, func(i int) error { return createBulkService(ctx, cs, i) }); err != nil {
		return res, fmt.Errorf("creating Services: %w", err)
	}
	last := time.Now()
	res.load = last.Sub(start)
	progress("created %d Services and EndpointSlices in %.1f s; waiting until all are programmed", o.Services, res.load.Seconds())
	deadline := last.Add(10 * time.Minute)
	for {
		got, err := count()
		if err != nil {
			return res, fmt.Errorf("counting programmed Services: %w", err)
		}
		if got-base >= o.Services {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%d of %d Services programmed 10 minutes after the load", got-base, o.Services)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(poll):
		}
	}
	res.lag = time.Since(last)
	// A child that did the last of the work (kube-proxy's iptables-restore)
	// counts once it is reaped.
	waitNoChildren(pid, 2*time.Second)
	cpu1, err := bench.ProcCPUTicks(pid)
	if err != nil {
		return res, err
	}
	res.cpu = float64(cpu1-cpu0) / 100 // clock ticks of 10 ms
	res.rssMB, err = bench.RSSMB(pid)
	return res, err
}

// createBulkService creates Service i without a selector and its one
// EndpointSlice, as a controller outside Petrel's would: one TCP port, one
// ready endpoint of a distinct address, and the change's trigger time that
// network_programming_duration_seconds starts from.
func createBulkService(ctx context.Context, cs kubernetes.Interface, i int) error {
	name := fmt.Sprintf("svc-%d", i)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if _, err := cs.CoreV1().Services(bulkNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("Service %s: %w", name, err)
	}
	ready, port, proto := true, int32(8080), corev1.ProtocolTCP
	portName := "http"
	ip := netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-0",
			Labels:      map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "petrel-bench"},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(bulkNamespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("EndpointSlice %s: %w", slice.Name, err)
	}
	return nil
}

// benchNode is a `petrel node` with pods off, confined to its own cgroups,
// pins, node-local DNS address and data directory.
type benchNode struct {
	cmd                               *exec.Cmd
	exited                            chan struct{}
	petrel, name, dataDir, lbCgroup   string
	cgroupRoot, localDNS, pinDir, log string
	metricsPort                       int
}

// startBenchNode starts a node against the server's admin kubeconfig and
// waits for its /healthz, which it answers once its first sync is done.
// profiling serves /debug/pprof on its metrics address.
func startBenchNode(ctx context.Context, petrel, kubeconfig string, profiling bool) (_ *benchNode, err error) {
	dir, err := os.MkdirTemp("", "petrel-bench-node-")
	if err != nil {
		return nil, err
	}
	ports, err := bench.FreePorts(2)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	name := fmt.Sprintf("petrel-bench-%d", os.Getpid())
	n := &benchNode{petrel: petrel, name: name, dataDir: dir, lbCgroup: "petrel-lb-" + name, pinDir: bpfobj.PinDir(name),
		localDNS: fmt.Sprintf("169.254.23.%d", 1+os.Getpid()%250), metricsPort: ports[0], log: filepath.Join(dir, "node.log")}
	n.cgroupRoot = filepath.Join(n.lbCgroup, "pods")
	n.cmd = exec.Command(petrel, "node", "--kubeconfig", kubeconfig, "--data-dir", dir, "--node-name", name, "--run-pods=false",
		"--lb-cgroup", n.lbCgroup, "--cgroup-root", n.cgroupRoot, "--local-dns-address", n.localDNS,
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--node-server-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--nodeport-interfaces", "none", "--ingress-http-address=", "--ingress-https-address=")
	if profiling {
		n.cmd.Args = append(n.cmd.Args, "--profiling")
	}
	lf, err := os.Create(n.log)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	defer lf.Close() // the child holds its own copy
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s node: %w", petrel, err)
	}
	n.exited = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.exited) }()
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (node log kept at %s)", err, bench.KeepLog(n.log))
			_ = n.stop()
		}
	}()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.metricsPort)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
		}
		select {
		case <-n.exited:
			return nil, fmt.Errorf("petrel node exited during start")
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("petrel node not healthy after 90 s")
}

// stop stops the node and removes what it left, as test/cluster's
// cleanupNode does: `petrel node --cleanup` (pins, DNS address, pods'
// cgroup), then its cgroups and data directory. The log stays when
// something could not be removed.
func (n *benchNode) stop() error {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
	var errs []error
	out, err := exec.Command(n.petrel, "node", "--cleanup", "--data-dir", n.dataDir, "--node-name", n.name,
		"--cgroup-root", n.cgroupRoot, "--local-dns-address", n.localDNS).CombinedOutput()
	if err != nil {
		errs = append(errs, fmt.Errorf("petrel node --cleanup: %w: %s", err, strings.TrimSpace(string(out))))
	}
	if err := petrelruntime.RemoveCgroup(n.lbCgroup); err != nil {
		errs = append(errs, fmt.Errorf("removing cgroup %s: %w", n.lbCgroup, err))
	}
	if _, err := os.Stat(n.pinDir); err == nil {
		errs = append(errs, fmt.Errorf("pins left under %s", n.pinDir))
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleaning up node %s (log %s): %w", n.name, n.log, errors.Join(errs...))
	}
	return os.RemoveAll(n.dataDir)
}

// runKubeProxyBulk runs the same load against kube-proxy in iptables mode,
// in a network namespace of its own (its rules and sysctls stay there), on a
// fresh server reached through a forwarder listening inside the namespace.
func runKubeProxyBulk(ctx context.Context, o Options, progress func(string, ...interface{})) (res bulkResult, err error) {
	sp, err := bench.StartServer(ctx, o.Petrel)
	if err != nil {
		return res, err
	}
	defer sp.Stop()
	cfg, cs, err := sp.Client()
	if err != nil {
		return res, err
	}
	server, err := url.Parse(cfg.Host)
	if err != nil {
		return res, fmt.Errorf("server address %q: %w", cfg.Host, err)
	}
	ns := fmt.Sprintf("petrel-bench-kp-%d", os.Getpid())
	if err := bench.Exec("ip", "netns", "add", ns); err != nil {
		return res, err
	}
	defer func() { _ = bench.Exec("ip", "netns", "del", ns) }()
	for _, step := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		// A veth pair inside the namespace (kernels without the dummy
		// module have veth) carries the node address.
		{"-n", ns, "link", "add", "kp0", "type", "veth", "peer", "name", "kp1"},
		{"-n", ns, "addr", "add", kubeProxyNodeIP + "/24", "dev", "kp0"},
		{"-n", ns, "link", "set", "kp1", "up"},
		{"-n", ns, "link", "set", "kp0", "up"},
	} {
		if err := bench.Exec("ip", step...); err != nil {
			return res, err
		}
	}
	ln, err := listenInNetns(ns)
	if err != nil {
		return res, err
	}
	defer ln.Close()
	go forward(ln, server.Host)

	// kube-proxy gets the admin kubeconfig with the forwarder's address
	// (127.0.0.1 is in the server's certificate) and a Node of its own.
	kc, err := clientcmd.LoadFromFile(sp.Kubeconfig)
	if err != nil {
		return res, fmt.Errorf("reading %s: %w", sp.Kubeconfig, err)
	}
	for _, c := range kc.Clusters {
		c.Server = "https://" + ln.Addr().String()
	}
	kpConfig := filepath.Join(sp.Dir, "kube-proxy.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kpConfig); err != nil {
		return res, fmt.Errorf("writing %s: %w", kpConfig, err)
	}
	nodeName := ns
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{corev1.LabelHostname: nodeName}}}
	if node, err = cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return res, fmt.Errorf("creating Node %s: %w", nodeName, err)
	}
	// A patch, as node IPAM writes the Node's podCIDR at the same moment (an
	// update of the created object lost that race once).
	addresses, _ := json.Marshal(map[string]any{"status": map[string]any{"addresses": []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: kubeProxyNodeIP}, {Type: corev1.NodeHostName, Address: nodeName}}}})
	if _, err := cs.CoreV1().Nodes().PatchStatus(ctx, node.Name, addresses); err != nil {
		return res, fmt.Errorf("setting Node %s's address: %w", nodeName, err)
	}

	logPath := filepath.Join(sp.Dir, "kube-proxy.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer lf.Close()
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (kube-proxy log kept at %s)", err, bench.KeepLog(logPath))
		}
	}()
	// ip netns exec enters the namespace and execs kube-proxy in place, so
	// the pid is kube-proxy's. Conntrack limits and timeouts are left alone.
	cmd := exec.Command("ip", "netns", "exec", ns, o.KubeProxy, "--proxy-mode=iptables", "--kubeconfig="+kpConfig,
		"--hostname-override="+nodeName, "--bind-address="+kubeProxyNodeIP,
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0s", "--conntrack-tcp-timeout-close-wait=0s",
		"--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256")
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("starting kube-proxy: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	// Every Service with endpoints has its jump in KUBE-SERVICES; the
	// first (the API server's own) says kube-proxy has synced.
	count := func() (int, error) {
		out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES").Output()
		if err != nil {
			return 0, fmt.Errorf("iptables -t nat -S KUBE-SERVICES in %s: %w", ns, err)
		}
		return strings.Count(string(out), "-j KUBE-SVC-"), nil
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if got, err := count(); err == nil && got > 0 {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("kube-proxy wrote no service rules in 90 s")
		}
		select {
		case <-exited:
			return res, fmt.Errorf("kube-proxy exited")
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); err != nil || filepath.Base(exe) != filepath.Base(o.KubeProxy) {
		return res, fmt.Errorf("pid %d is %q, not kube-proxy: its CPU would not be measured", cmd.Process.Pid, exe)
	}
	if res, err = measureBulk(ctx, o, cs, cmd.Process.Pid, count, 500*time.Millisecond, func() {}, progress); err != nil {
		return res, err
	}
	res.p50, res.p99 = math.NaN(), math.NaN()
	return res, nil
}

// listenInNetns opens a TCP listener on 127.0.0.1 inside the named network
// namespace: a socket stays in the namespace it was made in. The work runs
// on a thread of its own, which goes back to the host's namespace before it
// is released, or exits with its goroutine if it cannot.
func listenInNetns(ns string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		host, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer host.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering network namespace %s: %w", ns, err)}
			return
		}
		ln, lerr := net.Listen("tcp4", "127.0.0.1:0")
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			if ln != nil {
				ln.Close()
			}
			ch <- result{err: fmt.Errorf("leaving network namespace %s: %w", ns, err)} // the thread stays locked and exits
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln, lerr}
	}()
	r := <-ch
	return r.ln, r.err
}

// forward copies each connection accepted on ln to and from target until
// ln is closed.
func forward(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer up.Close()
			go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(c, up)
		}()
	}
}

// waitNoChildren waits, up to d, until pid has no child processes.
func waitNoChildren(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		busy := false
		for _, t := range tasks {
			if b, err := os.ReadFile(t); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				busy = true
				break
			}
		}
		if !busy {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// histogram is one Prometheus histogram's cumulative bucket counts by
// upper bound (+Inf included).
type histogram map[float64]float64

// scrapeHistogram reads the buckets of the histogram name from a /metrics
// page in the text format.
func scrapeHistogram(ctx context.Context, metricsURL, name string) (histogram, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	h := histogram{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	prefix := name + `_bucket{le="`
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		bound, err1 := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		v, err2 := strconv.ParseFloat(count, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: cannot read %q", metricsURL, sc.Text())
		}
		h[bound] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", metricsURL, err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("%s has no histogram %s", metricsURL, name)
	}
	return h, nil
}

// minus is the observations of h not yet in earlier.
func (h histogram) minus(earlier histogram) histogram {
	d := histogram{}
	for b, v := range h {
		d[b] = v - earlier[b]
	}
	return d
}

// quantile estimates the q-th quantile (0..1) as Prometheus's
// histogram_quantile does: linearly within the bucket it falls in, the
// highest finite bound when it falls in +Inf's. NaN for no observations.
func (h histogram) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(h))
	for b := range h {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	total := h[math.Inf(1)]
	if total <= 0 || len(bounds) < 2 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range bounds {
		if h[b] >= rank {
			if math.IsInf(b, 1) {
				return lower
			}
			if h[b] == below {
				return b
			}
			return lower + (b-lower)*(rank-below)/(h[b]-below)
		}
		lower, below = b, h[b]
	}
	return lower
}
