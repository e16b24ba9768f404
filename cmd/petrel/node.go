package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/imagepull"
	"github.com/petrel-project/petrel/dataplane/node"
	"github.com/petrel-project/petrel/dataplane/proxy"
	"github.com/petrel-project/petrel/dataplane/routing"
	"github.com/petrel-project/petrel/dataplane/simnode"
)

// nodeFlags are `petrel node`'s flags; `petrel up` shares them.
type nodeFlags struct {
	nodePortIfaces string
	simulate       int
	cleanup        bool
	opts           node.Options
	localDNS       string
	upstreams      string
	tunnel         string
	mirrors        []string
}

func (f *nodeFlags) add(fs *pflag.FlagSet, withDataDir bool) {
	f.opts = node.DefaultOptions()
	f.localDNS = f.opts.LocalDNS.String()
	if withDataDir {
		fs.StringVar(&f.opts.DataDir, "data-dir", f.opts.DataDir, "directory for the node's state; its admin.kubeconfig is used unless --kubeconfig or --token is given")
		fs.StringVar(&f.opts.Kubeconfig, "kubeconfig", "", "kubeconfig of the API server (default <data-dir>/admin.kubeconfig)")
		fs.StringVar(&f.opts.Server, "server", "", "API server URLs, comma-separated (https://10.0.0.1:6443,https://10.0.0.2:6443): the servers to join with --token, or replacing the kubeconfig's (whose credentials are still used). The node's clients reach them through a load balancer on its loopback that tries them in turn, learns the others from the kubernetes Service's endpoints, and fails over without a restart")
		fs.StringVar(&f.opts.Token, "token", "", "join token (`petrel token create`, or the server's <data-dir>/node-token): the node gets its own client certificate and keeps it in <data-dir>/node.kubeconfig; needs --server")
		fs.DurationVar(&f.opts.CertificateLifetime, "node-cert-lifetime", 0, "lifetime to ask for the node's client certificate (0: the server's, a year); it is renewed at 70-90% of it")
	}
	fs.StringVar(&f.opts.NodeName, "node-name", f.opts.NodeName, "name of this Node")
	fs.StringVar(&f.opts.CgroupRoot, "cgroup-root", f.opts.CgroupRoot, "cgroup (under the cgroup v2 mount) that pods go in")
	fs.StringVar(&f.opts.LBCgroup, "lb-cgroup", f.opts.LBCgroup, "cgroup (under the cgroup v2 mount) whose processes reach Services through the socket load balancer; / is every process on the node")
	fs.StringVar(&f.opts.PinDir, "pin-dir", "", "bpffs directory of the pinned maps and links (default /sys/fs/bpf/petrel/<node-name>)")
	fs.StringVar(&f.localDNS, "local-dns-address", f.localDNS, "node-local address of the cluster DNS that kube-dns leads to; empty turns the DNS off")
	fs.StringVar(&f.upstreams, "dns-upstream", "", "comma-separated resolvers for names outside the cluster (default: /etc/resolv.conf's)")
	fs.StringVar(&f.opts.ClusterDomain, "cluster-domain", f.opts.ClusterDomain, "DNS domain of the cluster")
	fs.StringVar(&f.opts.MetricsAddress, "metrics-address", f.opts.MetricsAddress, "address of the node's /metrics and /healthz")
	fs.BoolVar(&f.opts.Profiling, "profiling", false, "also serve Go's /debug/pprof on --metrics-address (CPU and heap profiles of the node)")
	fs.BoolVar(&f.opts.TrafficCounters, "traffic-counters", f.opts.TrafficCounters, "count new connections, packets and bytes per Service frontend and backend in the BPF load balancer (petrel_service_*_total on /metrics, petrelctl service list --stats, petrelctl top services)")
	fs.BoolVar(&f.opts.Trace, "trace", false, "report every new connection NetworkPolicy allows on the policy ring buffer too, not only drops (petrelctl monitor --type trace); one event per connection, never per packet")
	fs.BoolVar(&f.opts.RunPods, "run-pods", f.opts.RunPods, "run pods (the kubelet on containerd); false leaves the node to Services and DNS, tainted so that nothing is scheduled to it")
	fs.StringVar(&f.opts.ContainerdAddress, "containerd-address", "", "socket of a running containerd to use (default: start Debian's containerd with its state under <data-dir>/containerd)")
	fs.StringVar(&f.opts.OCIRuntime, "oci-runtime", f.opts.OCIRuntime, "OCI runtime of pods without a runtimeClassName: crun, runc, or auto (crun where installed, runc otherwise); RuntimeClasses runc and crun pick either per pod")
	fs.StringSliceVar(&f.opts.Registries.Insecure, "insecure-registry", nil, "registry (HOST:PORT) to pull from over plain HTTP; repeatable")
	fs.StringArrayVar(&f.mirrors, "registry-mirror", nil, "REGISTRY=URL: a mirror tried before the registry (docker.io=https://mirror.example.com); repeatable, tried in order")
	fs.StringSliceVar(&f.opts.Registries.CAFiles, "registry-ca", nil, "PEM file of certificate authorities trusted for registries, beside the system's; repeatable")
	fs.IntVar(&f.opts.ImageGC.High, "image-gc-high-threshold", f.opts.ImageGC.High, "percent of the image disk used above which unused images are removed (100 turns image GC off)")
	fs.IntVar(&f.opts.ImageGC.Low, "image-gc-low-threshold", f.opts.ImageGC.Low, "percent of the image disk that image GC frees down to")
	fs.DurationVar(&f.opts.ImageGC.MinAge, "image-minimum-gc-age", f.opts.ImageGC.MinAge, "an unused image is kept this long after it was pulled or last used")
	fs.DurationVar(&f.opts.ImageGC.Period, "image-gc-period", f.opts.ImageGC.Period, "how often image GC looks at the disk")
	fs.StringVar(&f.nodePortIfaces, "nodeport-interfaces", "default", "comma-separated interfaces where NodePorts answer clients on other hosts (tc_nodeport); \"default\" is the default route's, \"none\" none")
	fs.StringVar(&f.tunnel, "tunnel", string(f.opts.Tunnel), "how pods reach other nodes' pods: auto (natively to a node on one of this node's subnets, by bpf_redirect_neigh; through a VXLAN overlay, UDP 8472, to any other), vxlan or geneve (UDP 6081) for every node, or disabled (kernel routes \"podCIDR via node\" only). Pods' MTU is the uplink's less 50 unless disabled")
	fs.StringVar(&f.opts.LBAlgorithm, "lb-algorithm", f.opts.LBAlgorithm, "how tc_nodeport picks the backend of a new flow from another host: random, or maglev (consistent hashing: every node picks the same backend for a flow); a Service's service.petrel.io/lb-algorithm annotation overrides it")
	fs.StringVar(&f.opts.NodeServerAddress, "node-server-address", f.opts.NodeServerAddress, "address of the node server behind kubectl logs, exec, attach and port-forward")
	fs.StringVar(&f.opts.ClusterDNS, "cluster-dns", f.opts.ClusterDNS, "nameserver of pods with dnsPolicy ClusterFirst (the kube-dns Service)")
	fs.StringVar(&f.opts.Ingress.HTTPAddress, "ingress-http-address", f.opts.Ingress.HTTPAddress, "where the node serves the cluster's Ingresses (class petrel) over HTTP (and HTTP/2 with prior knowledge); empty turns it off")
	fs.StringVar(&f.opts.Ingress.HTTPSAddress, "ingress-https-address", f.opts.Ingress.HTTPSAddress, "where the node serves the cluster's Ingresses over HTTPS (certificates from the Secrets in spec.tls, by SNI); empty turns it off")
	fs.DurationVar(&f.opts.Ingress.RequestTimeout, "ingress-request-timeout", f.opts.Ingress.RequestTimeout, "how long the ingress waits for a backend's response headers before answering 504")
	fs.DurationVar(&f.opts.LeaseRenewInterval, "lease-renew-interval", f.opts.LeaseRenewInterval, "how often the node renews its Lease (keep it well under the server's --node-monitor-grace-period)")
}

// resolve turns the string flags into options.
func (f *nodeFlags) resolve() (node.Options, error) {
	o := f.opts
	if o.Token != "" && o.Kubeconfig != "" {
		return o, fmt.Errorf("--token and --kubeconfig exclude each other: a node joined with a token uses its own <data-dir>/%s", node.NodeKubeconfigFile)
	}
	if o.Token != "" && o.Server == "" {
		return o, fmt.Errorf("--token needs --server, the API server to join (https://HOST:6443)")
	}
	if o.Kubeconfig == "" && o.Token == "" {
		o.Kubeconfig = filepath.Join(o.DataDir, "admin.kubeconfig")
	}
	o.LocalDNS = netip.Addr{}
	if f.localDNS != "" {
		a, err := netip.ParseAddr(f.localDNS)
		if err != nil || !a.Is4() {
			return o, fmt.Errorf("--local-dns-address %q is not an IPv4 address", f.localDNS)
		}
		o.LocalDNS = a
	}
	for _, m := range f.mirrors {
		reg, url, err := imagepull.ParseMirror(m)
		if err != nil {
			return o, fmt.Errorf("--registry-mirror: %w", err)
		}
		if o.Registries.Mirrors == nil {
			o.Registries.Mirrors = map[string][]string{}
		}
		o.Registries.Mirrors[reg] = append(o.Registries.Mirrors[reg], url)
	}
	if err := o.ImageGC.Validate(); err != nil {
		return o, fmt.Errorf("--image-gc-high-threshold/--image-gc-low-threshold: %w", err)
	}
	mode, err := routing.ParseMode(f.tunnel)
	if err != nil {
		return o, fmt.Errorf("--tunnel: %w", err)
	}
	o.Tunnel = mode
	if o.LBAlgorithm == "" {
		o.LBAlgorithm = proxy.AlgorithmRandom
	}
	if !proxy.ValidAlgorithm(o.LBAlgorithm) {
		return o, fmt.Errorf("--lb-algorithm %q: use %s or %s", o.LBAlgorithm, proxy.AlgorithmRandom, proxy.AlgorithmMaglev)
	}
	switch f.nodePortIfaces {
	case "default", "":
		o.NodePortInterfaces = nil
	case "none":
		o.NodePortInterfaces = []string{}
	default:
		o.NodePortInterfaces = strings.Split(f.nodePortIfaces, ",")
	}
	if f.upstreams != "" {
		for _, u := range strings.Split(f.upstreams, ",") {
			if !strings.Contains(u, ":") {
				u += ":53"
			}
			o.DNSUpstreams = append(o.DNSUpstreams, u)
		}
	}
	return o, nil
}

func nodeCommand() *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{Use: "node", Short: "Run a node: pods on containerd, the eBPF service proxy and the node-local cluster DNS", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.resolve()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if f.cleanup {
				return cleanupNode(ctx, opts)
			}
			if f.simulate > 0 {
				if opts.Token != "" {
					return fmt.Errorf("--simulate speaks for many nodes with one identity: give it an admin --kubeconfig, not --token")
				}
				return runSimulated(ctx, opts, f.simulate)
			}
			n, err := node.Start(ctx, opts)
			if err != nil {
				return err
			}
			printNodeReady(opts, n)
			n.Wait()
			return nil
		}}
	f.add(cmd.Flags(), true)
	cmd.Flags().BoolVar(&f.cleanup, "cleanup", false, "stop and remove the node's pods, detach the socket load balancer, remove the pinned maps and the node-local DNS address, and exit (Services stop answering on this machine)")
	cmd.Flags().IntVar(&f.simulate, "simulate", 0, "run N simulated nodes named <node-name>-<i> instead (control-plane scale tests only, like kwok)")
	return cmd
}

// runSimulated runs simulated nodes until ctx ends.
func runSimulated(ctx context.Context, opts node.Options, count int) error {
	if opts.Server != "" {
		lb, err := node.StartServerLB(ctx, opts.Server, "")
		if err != nil {
			return err
		}
		opts.Server = lb.URL()
	}
	cfg, err := clientcmd.BuildConfigFromFlags(opts.Server, opts.Kubeconfig)
	if err != nil {
		return fmt.Errorf("read kubeconfig %q (pass --kubeconfig): %w", opts.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// A client of its own, so its own rate limit, for the kubelet events:
	// three per container, from every simulated node at once (a kubelet
	// allows itself 50/s; here one process speaks for all of them).
	evCfg := rest.CopyConfig(cfg)
	evCfg.QPS, evCfg.Burst = 500, 1000
	events, err := kubernetes.NewForConfig(evCfg)
	if err != nil {
		return fmt.Errorf("events client: %w", err)
	}
	if _, err := simnode.Start(ctx, cs, simnode.Options{Prefix: opts.NodeName, Count: count, LeaseRenewInterval: opts.LeaseRenewInterval,
		Events: events}); err != nil {
		return err
	}
	fmt.Printf("%d simulated nodes %s-0 .. %s-%d are up: pods bound to them are reported Running (nothing runs)\n", count, opts.NodeName, opts.NodeName, count-1)
	<-ctx.Done()
	return nil
}

func printNodeReady(opts node.Options, n *node.Node) {
	fmt.Printf("Node %s is up: ", opts.NodeName)
	if opts.RunPods {
		fmt.Printf("pods run on containerd (images: petrelctl image import FILE.tar, or drop them in %s/images); ", opts.DataDir)
	}
	fmt.Printf("Services are load balanced at the socket for cgroup %s", opts.LBCgroup)
	if opts.LocalDNS.IsValid() {
		fmt.Printf("; cluster DNS on %s:53 (behind kube-dns 10.96.0.10)", opts.LocalDNS)
	}
	fmt.Printf("\n  metrics:  %s\n  BPF maps: petrelctl bpf lb list --node-name %s\n", n.MetricsURL, opts.NodeName)
	if h, s := opts.Ingress.HTTPAddress, opts.Ingress.HTTPSAddress; h != "" || s != "" {
		fmt.Printf("  ingress:  Ingresses of class petrel (the default) served on")
		if h != "" {
			fmt.Printf(" %s (HTTP)", h)
		}
		if s != "" {
			fmt.Printf(" %s (HTTPS)", s)
		}
		fmt.Println()
	}
}

// cleanupNode undoes what a node leaves on the machine when it stops; it
// does every step it can and then reports what failed.
func cleanupNode(ctx context.Context, opts node.Options) error {
	dir := opts.PinDir
	if dir == "" {
		dir = bpfobj.PinDir(opts.NodeName)
	}
	if err := node.Cleanup(ctx, opts, dir); err != nil {
		return fmt.Errorf("cleanup of node %s was incomplete: %w", opts.NodeName, err)
	}
	fmt.Printf("Removed the socket load balancer and maps under %s and the DNS address %s.\n", dir, opts.LocalDNS)
	return nil
}
