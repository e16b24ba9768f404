// Command petrelctl is the operators' CLI: views of a node's pinned BPF maps
// (`bpf lb list`, `bpf ct list`, `bpf maps`, `service list [--stats]`, `top services`) and benchmarks
// (`bench api|dns|dataplane|ingress|network|policy|proxy|scheduler|pods|ha`).
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/petrel-project/petrel/test/bench"
	"github.com/petrel-project/petrel/test/bench/api"
	"github.com/petrel-project/petrel/test/bench/dataplane"
	"github.com/petrel-project/petrel/test/bench/dns"
	"github.com/petrel-project/petrel/test/bench/ha"
	"github.com/petrel-project/petrel/test/bench/ingress"
	"github.com/petrel-project/petrel/test/bench/network"
	"github.com/petrel-project/petrel/test/bench/pods"
	"github.com/petrel-project/petrel/test/bench/policy"
	"github.com/petrel-project/petrel/test/bench/proxy"
	"github.com/petrel-project/petrel/test/bench/scheduler"
)

func main() {
	root := &cobra.Command{Use: "petrelctl", Short: "Operate and measure a Petrel cluster", SilenceUsage: true}
	root.AddCommand(benchCommand(), bpfCommand(), serviceCommand(), topCommand(), imageCommand(), containerCommand(), etcdCommand(), monitorCommand(), secretsEncryptCommand())
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

// petrelBinary finds the petrel binary: next to petrelctl, else on PATH.
func petrelBinary() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "petrel")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("petrel"); err == nil {
		return p
	}
	return "petrel"
}

func benchCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "bench SUITE", Short: "Run a benchmark suite and print its table (or JSON with -o json)"}
	var output string
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "table or json")
	opts := api.Options{Petrel: petrelBinary(), Duration: 5 * time.Second, Concurrency: 32, Pods: 10000, Watchers: 100, Progress: os.Stderr,
		Etcd: defaultEtcd(), KubeAPIServer: conformancePeer("kube-apiserver")}
	apiCmd := &cobra.Command{Use: "api", Short: "API server: creates/s vs raw etcd puts, LIST of many pods, watch delivery, memory; then pods created and listed vs the real kube-apiserver",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) { return api.Run(ctx, opts) })
		}}
	f := apiCmd.Flags()
	f.StringVar(&opts.Petrel, "petrel", opts.Petrel, "the petrel binary to start")
	f.DurationVar(&opts.Duration, "duration", opts.Duration, "length of each throughput run")
	f.IntVar(&opts.Concurrency, "concurrency", opts.Concurrency, "concurrent clients")
	f.IntVar(&opts.Pods, "pods", opts.Pods, "pods in the LIST test")
	f.IntVar(&opts.Watchers, "watchers", opts.Watchers, "watchers in the watch delivery test")
	f.StringVar(&opts.Etcd, "etcd", opts.Etcd, "etcd binary started for each server of the peer comparison (default /usr/bin/etcd or etcd on PATH); empty: no comparison")
	f.StringVar(&opts.KubeAPIServer, "kube-apiserver", opts.KubeAPIServer, "kube-apiserver binary for the peer comparison's baseline (default $CONFORMANCE_DIR/bin/kube-apiserver when built); empty: Petrel's side alone")
	f.BoolVar(&opts.PeerOnly, "peer-only", false, "run only the comparison with kube-apiserver (--pods pods created, listed, memory)")
	f.StringVar(&opts.ProfileDir, "profile-dir", "", "save the heap profiles of the servers (after the suite's own part, and of both after the comparison's lists) in this directory")
	cmd.AddCommand(apiCmd)

	dopts := dns.Options{Petrel: opts.Petrel, Services: 1000, Duration: 10 * time.Second, Progress: os.Stderr}
	dnsCmd := &cobra.Command{Use: "dns", Short: "Cluster DNS: dnsperf against petrel dns and a bare miekg/dns server, CPU per query, latency per kind",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) {
				exe, err := os.Executable()
				if err != nil {
					return nil, err
				}
				dopts.Petrelctl = exe
				return dns.Run(ctx, dopts)
			})
		}}
	df := dnsCmd.Flags()
	df.StringVar(&dopts.Petrel, "petrel", dopts.Petrel, "the petrel binary to start")
	df.IntVar(&dopts.Services, "services", dopts.Services, "Services in the cluster")
	df.DurationVar(&dopts.Duration, "duration", dopts.Duration, "length of each dnsperf run")
	cmd.AddCommand(dnsCmd)

	var listen string
	popts := dataplane.Options{Duration: 3 * time.Second, Concurrency: 16, Rounds: 3, Sizes: []int{1, 1000, 10000}, Progress: os.Stderr}
	dataplaneCmd := &cobra.Command{Use: "dataplane", Short: "Socket load balancer: connects/s and UDP requests/s via a ClusterIP vs direct and vs kube-proxy iptables rules; map programming",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) {
				exe, err := os.Executable()
				if err != nil {
					return nil, err
				}
				popts.Petrelctl = exe
				return dataplane.Run(ctx, popts)
			})
		}}
	pf := dataplaneCmd.Flags()
	pf.DurationVar(&popts.Duration, "duration", popts.Duration, "length of each load run")
	pf.IntVar(&popts.Concurrency, "concurrency", popts.Concurrency, "concurrent client connections")
	pf.IntVar(&popts.Rounds, "rounds", popts.Rounds, "measurements of each figure; the median is reported")
	pf.IntSliceVar(&popts.Sizes, "services", popts.Sizes, "numbers of Services loaded (the target is the last)")
	cmd.AddCommand(dataplaneCmd)

	sopts := scheduler.Options{Petrel: opts.Petrel, Nodes: 1000, Pods: 10000, Replicas: 1000, SimNodes: 100, Progress: os.Stderr}
	schedCmd := &cobra.Command{Use: "scheduler", Short: "Scheduler: pods/s bound on many nodes, create-to-bind latency; a large Deployment on simulated nodes",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) { return scheduler.Run(ctx, sopts) })
		}}
	sf := schedCmd.Flags()
	sf.StringVar(&sopts.Petrel, "petrel", sopts.Petrel, "the petrel binary to start")
	sf.IntVar(&sopts.Nodes, "nodes", sopts.Nodes, "nodes in the scheduling run")
	sf.IntVar(&sopts.Pods, "pods", sopts.Pods, "pods in the scheduling run")
	sf.IntVar(&sopts.Replicas, "replicas", sopts.Replicas, "replicas of the Deployment run")
	sf.IntVar(&sopts.SimNodes, "simulated-nodes", sopts.SimNodes, "simulated nodes in the Deployment run")
	cmd.AddCommand(schedCmd)

	proxyOpts := proxy.Options{Petrel: opts.Petrel, KubeProxy: conformancePeer("kube-proxy"), Services: 10000, Workers: 4, CPUProfileSeconds: 5, Progress: os.Stderr}
	proxyCmd := &cobra.Command{Use: "proxy", Short: "Service proxy: CPU of petrel node for a bulk load of Services vs kube-proxy (iptables) on the same load; time to program them (root)",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) { return proxy.Run(ctx, proxyOpts) })
		}}
	proxyFlags := proxyCmd.Flags()
	proxyFlags.StringVar(&proxyOpts.Petrel, "petrel", proxyOpts.Petrel, "the petrel binary to start")
	proxyFlags.StringVar(&proxyOpts.KubeProxy, "kube-proxy", proxyOpts.KubeProxy, "kube-proxy binary for the baseline (default $CONFORMANCE_DIR/bin/kube-proxy when built); empty: not measured")
	proxyFlags.IntVar(&proxyOpts.Services, "services", proxyOpts.Services, "Services created, each with one EndpointSlice")
	proxyFlags.IntVar(&proxyOpts.Workers, "workers", proxyOpts.Workers, "concurrent clients creating them")
	proxyFlags.StringVar(&proxyOpts.CPUProfile, "cpu-profile", "", "write a CPU profile of petrel node over the load to this file (go tool pprof reads it); sampling costs the node some CPU")
	proxyFlags.IntVar(&proxyOpts.CPUProfileSeconds, "cpu-profile-seconds", proxyOpts.CPUProfileSeconds, "length of the --cpu-profile, from just before the first create")
	cmd.AddCommand(proxyCmd)

	podOpts := pods.Options{Petrel: opts.Petrel, Pods: 100, Batch: 10, Idle: 10, LonePods: 10, Pulls: 3, PullMB: 10, Progress: os.Stderr}
	podsCmd := &cobra.Command{Use: "pods", Short: "Pods on real containerd: create → Running/Ready latency vs ctr run of the same image, lone pods, registry pulls vs ctr image pull; petrel up memory with a few pods",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) { return pods.Run(ctx, podOpts) })
		}}
	podFlags := podsCmd.Flags()
	podFlags.StringVar(&podOpts.Petrel, "petrel", podOpts.Petrel, "the petrel binary to start")
	podFlags.IntVar(&podOpts.Pods, "pods", podOpts.Pods, "pods to start")
	podFlags.IntVar(&podOpts.Batch, "batch", podOpts.Batch, "pods created at once")
	podFlags.IntVar(&podOpts.Idle, "idle-pods", podOpts.Idle, "pods kept for the memory figure")
	podFlags.IntVar(&podOpts.LonePods, "lone-pods", podOpts.LonePods, "pods started one at a time, each alone on the node (0: none)")
	podFlags.IntVar(&podOpts.Pulls, "pulls", podOpts.Pulls, "image pulls from a local registry by ctr and by the node, each (0: none)")
	podFlags.IntVar(&podOpts.PullMB, "pull-mb", podOpts.PullMB, "size in MB of the layer each pulled image adds to the test image")
	cmd.AddCommand(podsCmd)

	iopts := ingress.Options{Petrel: opts.Petrel, Duration: 10 * time.Second, Connections: 64, Threads: 2, Rounds: 3, Progress: os.Stderr}
	ingressCmd := &cobra.Command{Use: "ingress", Short: "HTTP through the node's ingress (wrk requests/s and p99) vs straight to one pod and vs nginx as a reverse proxy (root)",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) { return ingress.Run(ctx, iopts) })
		}}
	inf := ingressCmd.Flags()
	inf.StringVar(&iopts.Petrel, "petrel", iopts.Petrel, "the petrel binary to start")
	inf.DurationVar(&iopts.Duration, "duration", iopts.Duration, "length of each wrk run")
	inf.IntVar(&iopts.Connections, "connections", iopts.Connections, "wrk's open connections (-c)")
	inf.IntVar(&iopts.Threads, "threads", iopts.Threads, "wrk's threads (-t), and nginx's workers")
	inf.IntVar(&iopts.Rounds, "rounds", iopts.Rounds, "measurements of each figure; the median is reported")
	inf.StringVar(&iopts.CPUProfile, "cpu-profile", "", "save a CPU profile of petrel up (ingress and server) during the first run through the ingress")
	cmd.AddCommand(ingressCmd)

	nopts := network.Options{Petrel: opts.Petrel, Throughput: 5 * time.Second, Duration: 3 * time.Second, Concurrency: 8, Rounds: 5,
		Wait: 10 * time.Minute, Progress: os.Stderr}
	networkCmd := &cobra.Command{Use: "network", Short: "Pod to pod across two nodes (iperf3 TCP throughput, connections/s), native and VXLAN, vs node to node and a kernel-only baseline (root)",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) {
				exe, err := os.Executable()
				if err != nil {
					return nil, err
				}
				nopts.Petrelctl = exe
				return network.Run(ctx, nopts)
			})
		}}
	nf := networkCmd.Flags()
	nf.StringVar(&nopts.Petrel, "petrel", nopts.Petrel, "the petrel binary to start")
	nf.DurationVar(&nopts.Throughput, "iperf-time", nopts.Throughput, "length of each iperf3 run (whole seconds)")
	nf.DurationVar(&nopts.Duration, "duration", nopts.Duration, "length of each connections/s run")
	nf.IntVar(&nopts.Concurrency, "concurrency", nopts.Concurrency, "concurrent clients in a connections/s run")
	nf.IntVar(&nopts.Rounds, "rounds", nopts.Rounds, "measurements of each figure; the median is reported")
	nf.DurationVar(&nopts.Wait, "wait", nopts.Wait, "how long to wait for another multi-node topology on this machine to go")
	cmd.AddCommand(networkCmd)

	hopts := ha.Options{Petrel: opts.Petrel, Duration: 5 * time.Second, Concurrency: 32, Kills: 5, Progress: os.Stderr}
	haCmd := &cobra.Command{Use: "ha", Short: "Replicated control plane: creates/s on three servers (three etcd members) vs one; kill -9 of the controllers' leader: time to the first write through a survivor and to the controllers' first action",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) { return ha.Run(ctx, hopts) })
		}}
	hf := haCmd.Flags()
	hf.StringVar(&hopts.Petrel, "petrel", hopts.Petrel, "the petrel binary to start")
	hf.DurationVar(&hopts.Duration, "duration", hopts.Duration, "length of each creates/s run")
	hf.IntVar(&hopts.Concurrency, "concurrency", hopts.Concurrency, "clients of the creates/s runs")
	hf.IntVar(&hopts.Kills, "kills", hopts.Kills, "leader kills measured (the p50 is reported)")
	cmd.AddCommand(haCmd)

	polopts := policy.Options{Policies: 1000, Pods: 1000, Duration: 3 * time.Second, Throughput: 3 * time.Second, Concurrency: 16,
		Rounds: 3, Changes: 200, Progress: os.Stderr}
	policyCmd := &cobra.Command{Use: "policy", Short: "NetworkPolicy in BPF: pod to pod connections/s and throughput with no policy, with 1,000 policies over 1,000 pods, and with the same policies as iptables + ipset rules; map sizes; policy change latency (root)",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return runSuite(output, func(ctx context.Context) (*bench.Report, error) {
				exe, err := os.Executable()
				if err != nil {
					return nil, err
				}
				polopts.Petrelctl = exe
				return policy.Run(ctx, polopts)
			})
		}}
	polf := policyCmd.Flags()
	polf.IntVar(&polopts.Policies, "policies", polopts.Policies, "NetworkPolicies loaded")
	polf.IntVar(&polopts.Pods, "pods", polopts.Pods, "pods the policies select and admit (all on the measured node)")
	polf.DurationVar(&polopts.Duration, "duration", polopts.Duration, "length of each connections/s run")
	polf.DurationVar(&polopts.Throughput, "iperf-time", polopts.Throughput, "length of each iperf3 run (whole seconds)")
	polf.IntVar(&polopts.Concurrency, "concurrency", polopts.Concurrency, "concurrent clients in a connections/s run")
	polf.IntVar(&polopts.Rounds, "rounds", polopts.Rounds, "measurements of each figure; the median is reported")
	polf.IntVar(&polopts.Changes, "changes", polopts.Changes, "policy changes timed for the programming latency")
	cmd.AddCommand(policyCmd)

	var role, mode, target, listenAddr string
	var workers int
	var runFor time.Duration
	worker := &cobra.Command{Use: "dataplane-worker", Hidden: true, Short: "The dataplane suite's client or server, run inside its network namespaces",
		RunE: func(*cobra.Command, []string) error {
			if role == "server" {
				return bench.ServeDataplane(listenAddr)
			}
			return bench.DriveDataplane(mode, target, workers, runFor)
		}}
	wf := worker.Flags()
	wf.StringVar(&role, "role", "client", "client or server")
	wf.StringVar(&mode, "mode", "tcp", "tcp or udp")
	wf.StringVar(&target, "target", "", "address to load")
	wf.StringVar(&listenAddr, "listen", "", "server address")
	wf.IntVar(&workers, "concurrency", 16, "concurrent clients")
	wf.DurationVar(&runFor, "duration", 5*time.Second, "run length")
	cmd.AddCommand(worker)

	baseline := &cobra.Command{Use: "dns-baseline", Hidden: true, Short: "Serve the dns suite's baseline (stock miekg/dns server, one record)",
		RunE: func(*cobra.Command, []string) error { return dns.ServeBaseline(listen) }}
	baseline.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address")
	cmd.AddCommand(baseline)
	return cmd
}

// conformancePeer is the real Kubernetes program (kube-proxy,
// kube-apiserver) that ../shared/conformance/build.sh peers builds, if it is
// there; empty otherwise.
func conformancePeer(name string) string {
	dir := os.Getenv("CONFORMANCE_DIR")
	if dir == "" {
		dir = "/var/tmp/petrel-conformance"
	}
	p := filepath.Join(dir, "bin", name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// defaultEtcd is Debian's etcd (package etcd-server), else etcd on PATH;
// empty when there is none.
func defaultEtcd() string {
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd"
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	return ""
}

// runSuite runs one benchmark suite until it ends, Ctrl-C or SIGTERM (the
// suite then cleans up and fails), and prints its report as a table or JSON.
func runSuite(output string, run func(ctx context.Context) (*bench.Report, error)) error {
	if output != "table" && output != "json" {
		return fmt.Errorf("-o must be table or json, not %q", output)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx)
	if err != nil {
		return err
	}
	return rep.Write(os.Stdout, output)
}
