// Package dataplane is the dataplane suite of petrelctl bench: the socket
// load balancer's connects and requests per second through a ClusterIP
// against direct connections and kube-proxy-shaped iptables rules, and the
// cost of programming its maps, in network namespaces on this machine.
package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/proxy"
	"github.com/petrel-project/petrel/test/bench"
)

// Options configure the dataplane suite.
type Options struct {
	// Petrelctl is the binary that runs the suite's client and server workers.
	Petrelctl   string
	Duration    time.Duration
	Concurrency int
	// Rounds is how many times each figure is measured (the median is kept).
	Rounds int
	// Sizes are the numbers of Services loaded; the target is the last one.
	Sizes    []int
	Progress io.Writer
}

const (
	clientAddr = "10.250.0.1"
	serverAddr = "10.250.0.2"
	serverPort = 8080
)

// dataplaneEnv is two network namespaces joined by a veth (a client pod and
// a server pod), a load-balanced cgroup and a plain one, and the socket LB.
type dataplaneEnv struct {
	clientNS, serverNS string
	lbCgroup, plain    string
	pinDir             string
	lb                 *bpfobj.SocketLB
	proxy              *proxy.Proxy
	server             *exec.Cmd
	cleanups           []func()
}

func (e *dataplaneEnv) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

func newDataplaneEnv(o Options) (*dataplaneEnv, error) {
	id := strconv.Itoa(os.Getpid())
	e := &dataplaneEnv{clientNS: "petrel-bench-c-" + id, serverNS: "petrel-bench-s-" + id}
	fail := func(err error) (*dataplaneEnv, error) { e.close(); return nil, err }
	// Interrupted or killed politely, the run takes down what it made
	// (namespaces, cgroups, pins, rules) before it goes.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "bench dataplane: %v: cleaning up\n", s)
			e.close()
			os.Exit(1)
		case <-done:
		}
	}()
	e.cleanups = append(e.cleanups, func() { signal.Stop(sigs); close(done) })
	for _, ns := range []string{e.clientNS, e.serverNS} {
		if err := bench.Exec("ip", "netns", "add", ns); err != nil {
			return fail(err)
		}
		e.cleanups = append(e.cleanups, func() { _ = bench.Exec("ip", "netns", "del", ns) })
	}
	vc, vs := "pbc"+id, "pbs"+id
	steps := [][]string{
		{"link", "add", vc, "type", "veth", "peer", "name", vs},
		{"link", "set", vc, "netns", e.clientNS},
		{"link", "set", vs, "netns", e.serverNS},
		{"-n", e.clientNS, "addr", "add", clientAddr + "/24", "dev", vc},
		{"-n", e.serverNS, "addr", "add", serverAddr + "/24", "dev", vs},
		{"-n", e.serverNS, "addr", "add", "10.250.0.3/24", "dev", vs},
		{"-n", e.clientNS, "link", "set", vc, "up"},
		{"-n", e.serverNS, "link", "set", vs, "up"},
		{"-n", e.clientNS, "link", "set", "lo", "up"},
		{"-n", e.serverNS, "link", "set", "lo", "up"},
		// Service addresses need a route for iptables' DNAT (routing comes
		// before the nat OUTPUT hook), as a node's default route gives them.
		{"-n", e.clientNS, "route", "add", "default", "via", serverAddr},
	}
	for _, s := range steps {
		if err := bench.Exec("ip", s...); err != nil {
			return fail(err)
		}
	}
	root, err := bpfobj.CgroupV2Mount()
	if err != nil {
		return fail(err)
	}
	e.lbCgroup, e.plain = filepath.Join(root, "petrel-bench-lb-"+id), filepath.Join(root, "petrel-bench-plain-"+id)
	for _, cg := range []string{e.lbCgroup, e.plain} {
		if err := os.Mkdir(cg, 0o755); err != nil {
			return fail(fmt.Errorf("create cgroup: %w", err))
		}
		e.cleanups = append(e.cleanups, func() { _ = os.Remove(cg) })
	}
	e.pinDir = filepath.Join(bpfobj.BPFFSRoot, "petrel-bench-"+id)
	e.lb, err = bpfobj.LoadSocketLB(bpfobj.Options{PinDir: e.pinDir, CgroupPath: e.lbCgroup})
	if err != nil {
		return fail(err)
	}
	e.cleanups = append(e.cleanups, func() { e.lb.Close(); _ = bpfobj.Remove(e.pinDir) })
	e.proxy, err = proxy.New(proxy.Config{NodeName: "bench", NodeAddresses: func() ([]netip.Addr, error) { return nil, nil }}, &e.lb.Maps, nil)
	if err != nil {
		return fail(err)
	}

	// The server on core 1; clients get core 0.
	e.server = exec.Command("ip", "netns", "exec", e.serverNS, "taskset", "-c", "1", o.Petrelctl, "bench", "dataplane-worker",
		"--role", "server", "--listen", fmt.Sprintf("%s:%d", serverAddr, serverPort))
	e.server.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, _ := e.server.StdoutPipe()
	e.server.Stderr = os.Stderr
	if err := e.server.Start(); err != nil {
		return fail(err)
	}
	e.cleanups = append(e.cleanups, func() { _ = e.server.Process.Kill(); _ = e.server.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		return fail(fmt.Errorf("dataplane server did not start: %q", line))
	}
	return e, nil
}

// drive runs one client load in the client netns and the given cgroup.
func (e *dataplaneEnv) drive(ctx context.Context, o Options, cgroup, mode, target string) (float64, error) {
	fd, err := syscall.Open(cgroup, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(fd)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.clientNS, "taskset", "-c", "0", o.Petrelctl, "bench", "dataplane-worker",
		"--role", "client", "--mode", mode, "--target", target, "--concurrency", strconv.Itoa(o.Concurrency), "--duration", o.Duration.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("client %s %s: %w", mode, target, err)
	}
	var r bench.WorkerResult
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("client output %q: %w", out, err)
	}
	if r.Ops == 0 || r.Errors > r.Ops/100 {
		return 0, fmt.Errorf("client %s %s: %d ok, %d errors: the path does not work", mode, target, r.Ops, r.Errors)
	}
	return float64(r.Ops) / r.Seconds, nil
}

func vip(i int) netip.Addr {
	i++ // no .0 addresses
	return netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)})
}

func benchFrontends(i int, backends ...netip.Addr) []proxy.Frontend {
	var bs, hs []proxy.BackendAddr
	for _, b := range backends {
		bs = append(bs, proxy.BackendAddr{Address: b, Port: serverPort})
		hs = append(hs, proxy.BackendAddr{Address: b, Port: serverPort + 1})
	}
	return []proxy.Frontend{
		{Key: proxy.FrontendKey{Address: vip(i), Port: 80, Proto: 6}, Backends: bs},
		{Key: proxy.FrontendKey{Address: vip(i), Port: 80, Proto: 17}, Backends: bs},
		{Key: proxy.FrontendKey{Address: vip(i), Port: 81, Proto: 6}, Backends: hs},
	}
}

// modes are the loads each path carries, and what their clients target.
var modes = []string{"tcp", "udp", "http"}

// podTarget is the pod's own address for a load; serviceTarget the
// ClusterIP of the last of n Services.
func podTarget(mode string) string {
	_, pod := modePort(mode)
	return fmt.Sprintf("%s:%d", serverAddr, pod)
}

func serviceTarget(n int, mode string) string {
	svc, _ := modePort(mode)
	return fmt.Sprintf("%s:%d", vip(n-1), svc)
}

func modePort(mode string) (service, pod int) {
	if mode == "http" {
		return 81, serverPort + 1
	}
	return 80, serverPort
}

// programServices makes the maps hold services 0..n-1 and only those.
func (e *dataplaneEnv) programServices(from, n int) (time.Duration, error) {
	server := netip.MustParseAddr(serverAddr)
	start := time.Now()
	// As the proxy's first sync does: every Service in one batch of writes.
	all := make(map[string][]proxy.Frontend, n-from)
	for i := from; i < n; i++ {
		all[fmt.Sprintf("bench/svc-%d", i)] = benchFrontends(i, server)
	}
	if err := e.proxy.ApplyAll(all); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (e *dataplaneEnv) clearServices(n int) error {
	for i := range n {
		if err := e.proxy.Apply(fmt.Sprintf("bench/svc-%d", i), nil); err != nil {
			return err
		}
	}
	return nil
}

// kubeProxyRules writes iptables-restore input shaped like kube-proxy's:
// KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-* (DNAT), per service TCP and UDP.
func kubeProxyRules(n int) []byte {
	var b bytes.Buffer
	b.WriteString("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n")
	for i := range n {
		for _, p := range []string{"tcp", "udp", "http"} {
			fmt.Fprintf(&b, ":KUBE-SVC-%s%d - [0:0]\n:KUBE-SEP-%s%d - [0:0]\n", strings.ToUpper(p), i, strings.ToUpper(p), i)
		}
	}
	b.WriteString("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	b.WriteString("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n")
	for i := range n {
		for _, mode := range []string{"tcp", "udp", "http"} {
			up, p := strings.ToUpper(mode), mode
			if p == "http" {
				p = "tcp"
			}
			svcPort, podPort := modePort(mode)
			fmt.Fprintf(&b, "-A KUBE-SERVICES -d %s/32 -p %s -m comment --comment \"bench/svc-%d:%s cluster IP\" -m %s --dport %d -j KUBE-SVC-%s%d\n", vip(i), p, i, mode, p, svcPort, up, i)
			fmt.Fprintf(&b, "-A KUBE-SVC-%s%d -m comment --comment \"bench/svc-%d:%s -> %s:%d\" -m statistic --mode random --probability 1.0 -j KUBE-SEP-%s%d\n", up, i, i, mode, serverAddr, podPort, up, i)
			fmt.Fprintf(&b, "-A KUBE-SEP-%s%d -s %s/32 -m comment --comment \"bench/svc-%d:%s\" -j KUBE-MARK-MASQ\n", up, i, serverAddr, i, mode)
			fmt.Fprintf(&b, "-A KUBE-SEP-%s%d -p %s -m comment --comment \"bench/svc-%d:%s\" -m %s -j DNAT --to-destination %s:%d\n", up, i, p, i, mode, p, serverAddr, podPort)
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

func (e *dataplaneEnv) loadIptables(n int) (time.Duration, error) {
	cmd := exec.Command("ip", "netns", "exec", e.clientNS, "iptables-restore")
	cmd.Stdin = bytes.NewReader(kubeProxyRules(n))
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("iptables-restore: %v: %s", err, out)
	}
	return time.Since(start), nil
}

func (e *dataplaneEnv) flushIptables() error {
	if err := bench.Exec("ip", "netns", "exec", e.clientNS, "iptables", "-t", "nat", "-F"); err != nil {
		return err
	}
	return bench.Exec("ip", "netns", "exec", e.clientNS, "iptables", "-t", "nat", "-X")
}

// mapMemory sums what the kernel charges for the load balancer's maps.
func mapMemory(m *bpfobj.Maps) (int64, error) {
	var total int64
	for _, name := range bpfobj.MapNames {
		mp := m.ByName(name)
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", mp.FD()))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total, nil
}

// Run measures the socket load balancer against direct connections
// and kube-proxy-shaped iptables rules, in network namespaces on this machine.
func Run(ctx context.Context, o Options) (*bench.Report, error) {
	progress := func(format string, args ...interface{}) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench dataplane: "+format+"\n", args...)
		}
	}
	for _, tool := range []string{"ip", "iptables-restore", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (make deps installs it)", tool)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the dataplane suite needs root (network namespaces, BPF, iptables)")
	}
	sort.Ints(o.Sizes)
	e, err := newDataplaneEnv(o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	rep := bench.NewReport("dataplane")
	// Each size runs direct, socket LB and iptables in turn, Rounds times,
	// and keeps the median of each: neighbouring runs share the machine's
	// mood, so the ratios hold better than the absolute figures.
	rates := map[string]float64{}
	median := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	unit := map[string]string{"tcp": "connects/s", "udp": "requests/s", "http": "requests/s"}
	what := map[string]string{"tcp": "clusterip_tcp_connects", "udp": "clusterip_udp_requests", "http": "clusterip_http_requests"}
	largest := o.Sizes[len(o.Sizes)-1]
	var programTime, iptablesTime time.Duration
	empty, err := mapMemory(&e.lb.Maps)
	if err != nil {
		return nil, err
	}
	var perService float64
	rounds := max(o.Rounds, 1)
	// Warm up (neighbour entries, page cache, CPU clocks): the first runs in
	// fresh namespaces are slow and would skew the first size's figures.
	progress("warming up")
	warm := o
	warm.Duration = time.Second
	for _, mode := range modes {
		if _, err := e.drive(ctx, warm, e.plain, mode, podTarget(mode)); err != nil {
			return nil, err
		}
	}
	for _, n := range o.Sizes {
		samples := map[string][]float64{}
		for round := range rounds {
			progress("%d services, round %d of %d: direct, socket LB, iptables", n, round+1, rounds)
			for _, mode := range modes {
				r, err := e.drive(ctx, o, e.plain, mode, podTarget(mode))
				if err != nil {
					return nil, err
				}
				samples["direct_"+mode] = append(samples["direct_"+mode], r)
			}
			d, err := e.programServices(0, n)
			if err != nil {
				return nil, err
			}
			if n == largest && round == 0 {
				programTime = d
				full, err := mapMemory(&e.lb.Maps)
				if err != nil {
					return nil, err
				}
				perService = float64(full-empty) / float64(n)
				if err := e.endpointChanges(rep, n); err != nil {
					return nil, err
				}
			}
			for _, mode := range modes {
				r, err := e.drive(ctx, o, e.lbCgroup, mode, serviceTarget(n, mode))
				if err != nil {
					return nil, err
				}
				samples["socklb_"+mode] = append(samples["socklb_"+mode], r)
			}
			if n == largest {
				if err := e.countingCost(ctx, o, n, round, samples); err != nil {
					return nil, err
				}
			}
			if err := e.clearServices(n); err != nil {
				return nil, err
			}
			d, err = e.loadIptables(n)
			if err != nil {
				return nil, err
			}
			if n == largest && round == 0 {
				iptablesTime = d
			}
			for _, mode := range modes {
				r, err := e.drive(ctx, o, e.plain, mode, serviceTarget(n, mode))
				if err != nil {
					return nil, err
				}
				samples["iptables_"+mode] = append(samples["iptables_"+mode], r)
			}
			if err := e.flushIptables(); err != nil {
				return nil, err
			}
		}
		for k, v := range samples {
			rates[fmt.Sprintf("%s_%d", k, n)] = median(v)
		}
	}
	for _, mode := range modes {
		for _, n := range o.Sizes {
			v := rates[fmt.Sprintf("socklb_%s_%d", mode, n)]
			goal := 0.97
			if mode != "tcp" {
				goal = 0 // measured; the goals are set for connects
			}
			rep.AddRatio(fmt.Sprintf("%s_%d_services", what[mode], n), unit[mode], v, "direct_to_pod", rates[fmt.Sprintf("direct_%s_%d", mode, n)], "higher", goal)
			ipGoal := 0.0
			if n == largest && n >= 10000 && mode == "tcp" {
				ipGoal = 2
			}
			rep.AddRatio(fmt.Sprintf("%s_%d_services", what[mode], n), unit[mode], v, fmt.Sprintf("iptables_kube_proxy_rules_%d", n),
				rates[fmt.Sprintf("iptables_%s_%d", mode, n)], "higher", ipGoal)
		}
	}
	// Traffic counting's cost: the same connects with the counters on and
	// off, measured next to each other.
	rep.AddRatio(fmt.Sprintf("clusterip_tcp_connects_%d_services_counting_on", largest), unit["tcp"],
		rates[fmt.Sprintf("counting_on_tcp_%d", largest)], "counting_off", rates[fmt.Sprintf("counting_off_tcp_%d", largest)], "higher", 0.98)
	rep.AddRatio(fmt.Sprintf("program_%d_services", largest), "ms", float64(programTime.Microseconds())/1000,
		fmt.Sprintf("iptables_restore_%d_services", largest), float64(iptablesTime.Microseconds())/1000, "lower", 0)
	rep.Add("map_memory_per_service", "bytes", perService, "lower", nil)
	return rep, nil
}

// endpointChanges times one Service's endpoint change at a time, with n
// Services loaded: the map work kube-proxy would do in a full sync.
func (e *dataplaneEnv) endpointChanges(rep *bench.Report, n int) error {
	one, two := netip.MustParseAddr(serverAddr), netip.MustParseAddr("10.250.0.3")
	i := n / 2
	var times []time.Duration
	for k := range 400 {
		bs := []netip.Addr{one}
		if k%2 == 0 {
			bs = append(bs, two)
		}
		start := time.Now()
		if err := e.proxy.Apply(fmt.Sprintf("bench/svc-%d", i), benchFrontends(i, bs...)); err != nil {
			return err
		}
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })
	ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	rep.Add(fmt.Sprintf("endpoint_change_map_work_p50_%d_services", n), "ms", ms(times[len(times)/2]), "lower", nil)
	rep.Add(fmt.Sprintf("endpoint_change_map_work_p99_%d_services", n), "ms", ms(times[len(times)*99/100]), "lower", bench.Goal(1))
	return nil
}

// countingCost drives ClusterIP connects with the traffic counters on and
// off in an ABBA order (BAAB in odd rounds), so that a machine whose speed
// drifts during the round favours neither, and leaves them off as the
// suite's other figures are measured.
func (e *dataplaneEnv) countingCost(ctx context.Context, o Options, n, round int, samples map[string][]float64) error {
	order := []bool{true, false, false, true}
	if round%2 == 1 {
		order = []bool{false, true, true, false}
	}
	for _, on := range order {
		if err := bpfobj.SetTrafficCounting(&e.lb.Maps, on); err != nil {
			return err
		}
		r, err := e.drive(ctx, o, e.lbCgroup, "tcp", serviceTarget(n, "tcp"))
		if err != nil {
			return err
		}
		name := "counting_off_tcp"
		if on {
			name = "counting_on_tcp"
		}
		samples[name] = append(samples[name], r)
	}
	return bpfobj.SetTrafficCounting(&e.lb.Maps, false)
}
