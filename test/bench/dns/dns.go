// Package dns is the dns suite of petrelctl bench: petrel dns under
// dnsperf against a stock miekg/dns server answering one record, CPU per
// query, and latency per kind of query.
package dns

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/petrel-project/petrel/test/bench"
)

// Options tune the dns suite.
type Options struct {
	Petrel    string // the petrel binary
	Petrelctl string // this binary, for the baseline server
	Services  int
	Duration  time.Duration
	Progress  io.Writer
}

// BaselineName is the one name the baseline server answers.
const BaselineName = "bench.example."

// ServeBaseline runs the baseline: miekg/dns's stock server answering one
// fixed A record, as a plain library user would write it.
func ServeBaseline(addr string) error {
	rr, _ := mdns.NewRR(BaselineName + " 5 IN A 192.0.2.10")
	mdns.HandleFunc(".", func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})
	return (&mdns.Server{Addr: addr, Net: "udp"}).ListenAndServe()
}

// cpuTicks returns utime+stime of pid in clock ticks (100 per second here).
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return ut + st, nil
}

type perfResult struct {
	qps       float64
	completed float64
	cpuUS     float64 // server CPU µs per completed query
}

var (
	reQPS       = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	reCompleted = regexp.MustCompile(`Queries completed:\s+([0-9]+)`)
)

// dnsperf runs Debian's dnsperf on core 0 against addr with the query file and
// reads the server's CPU time over the run.
func runDNSPerf(ctx context.Context, addr, file string, d time.Duration, serverPID int) (perfResult, error) {
	host, port, _ := net.SplitHostPort(addr)
	before, err := cpuTicks(serverPID)
	if err != nil {
		return perfResult{}, err
	}
	cmd := exec.CommandContext(ctx, "taskset", "-c", "0", "dnsperf", "-s", host, "-p", port, "-d", file, "-l", fmt.Sprint(int(d.Seconds())), "-c", "8", "-q", "200", "-t", "2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return perfResult{}, fmt.Errorf("dnsperf: %v\n%s", err, out)
	}
	after, err := cpuTicks(serverPID)
	if err != nil {
		return perfResult{}, err
	}
	m1, m2 := reQPS.FindSubmatch(out), reCompleted.FindSubmatch(out)
	if m1 == nil || m2 == nil {
		return perfResult{}, fmt.Errorf("cannot read dnsperf output:\n%s", out)
	}
	var r perfResult
	r.qps, _ = strconv.ParseFloat(string(m1[1]), 64)
	r.completed, _ = strconv.ParseFloat(string(m2[1]), 64)
	if r.completed > 0 {
		r.cpuUS = float64(after-before) * 10000 / r.completed // 1 tick = 10 ms = 10,000 µs
	}
	return r, nil
}

func startPinned(ctx context.Context, core string, log string, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, "taskset", append([]string{"-c", core, name}, args...)...)
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, cmd.Start()
}

func waitDNS(addr, name string) error {
	c := &mdns.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		if r, _, err := c.Exchange(m, addr); err == nil && len(r.Answer) > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no DNS answer for %s from %s", name, addr)
}

// Run runs the dns suite.
func Run(ctx context.Context, o Options) (*bench.Report, error) {
	progress := func(format string, args ...interface{}) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench dns: "+format+"\n", args...)
		}
	}
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return nil, fmt.Errorf("dnsperf is not installed: apt-get install dnsperf")
	}
	rep := bench.NewReport("dns")
	progress("starting petrel server and %d Services", o.Services)
	sp, err := bench.StartServer(ctx, o.Petrel)
	if err != nil {
		return nil, err
	}
	defer sp.Stop()
	_, cs, err := sp.Client()
	if err != nil {
		return nil, err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if err := bench.RunEach(16, o.Services, func(i int) error {
		_, err := cs.CoreV1().Services("bench").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%d", i+1)},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return nil, err
	}
	ips, err := serviceIPs(ctx, cs)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "petrel-dnsbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	upstream, err := startFakeUpstream()
	if err != nil {
		return nil, err
	}
	defer upstream.Shutdown()

	ports, err := bench.FreePorts(2)
	if err != nil {
		return nil, err
	}
	ours := fmt.Sprintf("127.0.0.1:%d", ports[0])
	dnsCmd, err := startPinned(ctx, "1", filepath.Join(dir, "dns.log"), o.Petrel, "dns", "--kubeconfig", sp.Kubeconfig, "--listen", ours, "--dns-upstream", upstream.Addr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = dnsCmd.Process.Kill(); _ = dnsCmd.Wait() }()
	if err := waitDNS(ours, fmt.Sprintf("svc-%d.bench.svc.cluster.local.", o.Services)); err != nil {
		return nil, err
	}
	base := fmt.Sprintf("127.0.0.1:%d", ports[1])
	baseCmd, err := startPinned(ctx, "1", filepath.Join(dir, "baseline.log"), o.Petrelctl, "bench", "dns-baseline", "--listen", base)
	if err != nil {
		return nil, err
	}
	defer func() { _ = baseCmd.Process.Kill(); _ = baseCmd.Wait() }()
	if err := waitDNS(base, BaselineName); err != nil {
		return nil, err
	}

	kinds := queryKinds(o.Services, ips)
	mixed := filepath.Join(dir, "mixed.txt")
	internal := filepath.Join(dir, "internal.txt")
	baseline := filepath.Join(dir, "baseline.txt")
	if err := writeQueries(mixed, kinds, nil); err != nil {
		return nil, err
	}
	if err := writeQueries(internal, kinds, map[string]bool{"internal_a": true}); err != nil {
		return nil, err
	}
	if err := os.WriteFile(baseline, []byte(BaselineName+" A\n"), 0o644); err != nil {
		return nil, err
	}
	// Warm the forwarder's cache with the external names.
	for _, q := range kinds["external_cached"] {
		_ = waitDNS(ours, q.name)
	}

	progress("dnsperf: baseline (bare miekg/dns server), %s", o.Duration)
	b, err := runDNSPerf(ctx, base, baseline, o.Duration, baseCmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	progress("dnsperf: internal names, %s", o.Duration)
	in, err := runDNSPerf(ctx, ours, internal, o.Duration, dnsCmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	progress("dnsperf: mixed query file, %s", o.Duration)
	mx, err := runDNSPerf(ctx, ours, mixed, o.Duration, dnsCmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	capacity := func(r perfResult) float64 {
		if r.cpuUS == 0 {
			return 0
		}
		return 1e6 / r.cpuUS
	}
	rep.AddRatio("internal_a_capacity_per_core", "queries/s/core", capacity(in), "miekg_stock_server_one_record", capacity(b), "higher", 1.5)
	rep.AddRatio("internal_a_cpu_per_query", "µs", in.cpuUS, "miekg_stock_server_one_record", b.cpuUS, "lower", 1.5)
	rep.AddRatio("internal_a_qps", "queries/s", in.qps, "miekg_stock_server_one_record", b.qps, "higher", 1.0)
	rep.AddRatio("mixed_capacity_per_core", "queries/s/core", capacity(mx), "miekg_stock_server_one_record", capacity(b), "higher", 1.0)
	rep.Add("mixed_qps", "queries/s", mx.qps, "higher", nil)

	progress("latency per query kind")
	for _, kind := range []string{"internal_a", "search_nxdomain", "srv", "ptr", "external_cached"} {
		p50, p99, err := latency(ours, kinds[kind], 2000)
		if err != nil {
			return nil, err
		}
		rep.Add(kind+"_p50", "µs", float64(p50.Microseconds()), "lower", nil)
		goal := (*float64)(nil)
		if kind == "internal_a" {
			goal = bench.Goal(1000)
		}
		rep.Add(kind+"_p99", "µs", float64(p99.Microseconds()), "lower", goal)
	}
	return rep, nil
}

type dnsQuery struct {
	name  string
	qtype uint16
}

func queryKinds(n int, ips []string) map[string][]dnsQuery {
	k := map[string][]dnsQuery{}
	for i := 1; i <= n; i++ {
		k["internal_a"] = append(k["internal_a"], dnsQuery{fmt.Sprintf("svc-%d.bench.svc.cluster.local.", i), mdns.TypeA})
		// What a pod's resolver tries first for "svc-N.other" with ndots:5.
		k["search_nxdomain"] = append(k["search_nxdomain"], dnsQuery{fmt.Sprintf("svc-%d.other.bench.svc.cluster.local.", i), mdns.TypeA})
		k["srv"] = append(k["srv"], dnsQuery{fmt.Sprintf("_http._tcp.svc-%d.bench.svc.cluster.local.", i), mdns.TypeSRV})
	}
	for _, ip := range ips {
		if rev, err := mdns.ReverseAddr(ip); err == nil {
			k["ptr"] = append(k["ptr"], dnsQuery{rev, mdns.TypePTR})
		}
	}
	for i := 0; i < 50; i++ {
		k["external_cached"] = append(k["external_cached"], dnsQuery{fmt.Sprintf("host-%d.example.net.", i), mdns.TypeA})
	}
	return k
}

// writeQueries writes a dnsperf file; the mixed file weights internal hits
// highest, as a cluster's traffic does.
func writeQueries(path string, kinds map[string][]dnsQuery, only map[string]bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	weights := map[string]int{"internal_a": 4, "search_nxdomain": 3, "srv": 1, "ptr": 1, "external_cached": 1}
	for kind, qs := range kinds {
		if only != nil && !only[kind] {
			continue
		}
		for rep := 0; rep < weights[kind]; rep++ {
			for _, q := range qs {
				fmt.Fprintf(w, "%s %s\n", q.name, mdns.TypeToString[q.qtype])
			}
		}
	}
	return w.Flush()
}

func latency(addr string, qs []dnsQuery, n int) (time.Duration, time.Duration, error) {
	conn, err := mdns.Dial("udp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	var lat []time.Duration
	for i := 0; i < n; i++ {
		q := qs[i%len(qs)]
		m := new(mdns.Msg)
		m.SetQuestion(q.name, q.qtype)
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		start := time.Now()
		if err := conn.WriteMsg(m); err != nil {
			return 0, 0, err
		}
		if _, err := conn.ReadMsg(); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(start))
	}
	return bench.Percentile(lat, 50), bench.Percentile(lat, 99), nil
}

func serviceIPs(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	l, err := cs.CoreV1().Services("bench").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range l.Items {
		out = append(out, s.Spec.ClusterIP)
	}
	return out, nil
}

type fakeUpstream struct {
	srv  *mdns.Server
	Addr string
}

func (u *fakeUpstream) Shutdown() { _ = u.srv.Shutdown() }

// startFakeUpstream answers every name with one A record (TTL 300), standing in
// for the node's resolver so that the bench sends nothing off the machine.
func startFakeUpstream() (*fakeUpstream, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300}, A: net.ParseIP("192.0.2.20")})
		_ = w.WriteMsg(m)
	})
	srv := &mdns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	return &fakeUpstream{srv: srv, Addr: pc.LocalAddr().String()}, nil
}
