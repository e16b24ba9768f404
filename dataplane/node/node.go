// Package node wires `petrel node`: it registers the Node and keeps its
// Lease, loads the socket load balancer onto the node's cgroup, runs the
// service proxy that programs it, NetworkPolicy, the routes to other nodes' pods, the
// node-local cluster DNS, and the kubelet on a containerd it supervises,
// and serves the node's metrics.
package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	kinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/imagepull"
	"github.com/petrel-project/petrel/dataplane/ingress"
	"github.com/petrel-project/petrel/dataplane/kubelet"
	"github.com/petrel-project/petrel/dataplane/policy"
	"github.com/petrel-project/petrel/dataplane/proxy"
	"github.com/petrel-project/petrel/dataplane/resourcemetrics"
	"github.com/petrel-project/petrel/dataplane/routing"
	"github.com/petrel-project/petrel/dataplane/runtime"
	"github.com/petrel-project/petrel/dataplane/serverlb"
	"github.com/petrel-project/petrel/dataplane/stream"
	"github.com/petrel-project/petrel/dns"
)

// Options configure a node.
type Options struct {
	// Kubeconfig reaches the API server.
	Kubeconfig string
	// Server, when set, replaces the kubeconfig's API server address (a
	// kubeconfig copied from the control plane names 127.0.0.1); with Token,
	// it is the server to join. Several, comma-separated, are tried in
	// turn: the node's clients reach them through a local load balancer
	// (package serverlb) that also learns the servers the kubernetes
	// Service lists, and fails over without a restart.
	Server string
	// Token, when set, joins the cluster at Server with a join token
	// (`petrel token create`, <data-dir>/node-token of the server): the node
	// gets its own client certificate and writes <data-dir>/node.kubeconfig;
	// Kubeconfig is not read.
	Token string
	// CertificateLifetime is the lifetime the node asks its client
	// certificate for (0: the signer's default, a year); it is renewed at
	// 70-90% of it.
	CertificateLifetime time.Duration
	// NodeName names the Node (default: the host name).
	NodeName string
	// DataDir holds the node's state.
	DataDir string
	// CgroupRoot is the cgroup (under the v2 mount) pods go in.
	CgroupRoot string
	// LBCgroup is the cgroup (under the v2 mount) whose processes reach
	// Services through the socket load balancer: "/" is every process on the
	// node, as kube-proxy serves them.
	LBCgroup string
	// PinDir holds the pinned maps and links (default /sys/fs/bpf/petrel/<node>).
	PinDir string
	// LocalDNS is the node-local DNS address kube-dns leads to; invalid: no DNS.
	LocalDNS netip.Addr
	// DNSUpstreams are the resolvers for names outside the cluster (default:
	// /etc/resolv.conf's).
	DNSUpstreams []string
	// ClusterDomain is the DNS zone of Services.
	ClusterDomain string
	// MetricsAddress serves /metrics and /healthz.
	MetricsAddress string
	// Profiling also serves Go's /debug/pprof on MetricsAddress, as
	// kube-proxy's --profiling does; off, nothing of it is registered.
	Profiling bool
	// TrafficCounters has the BPF load balancer count connections,
	// packets and bytes per Service frontend and backend (exported on
	// /metrics); off, the programs skip the counting.
	TrafficCounters bool
	// Trace has the BPF programs report every allowed new connection on the
	// policy ring buffer too (`petrelctl monitor --type trace`).
	Trace bool
	// LeaseRenewInterval is how often the node's Lease is renewed.
	LeaseRenewInterval time.Duration
	// RunPods runs the kubelet; without it the Node carries NoRuntimeTaint.
	RunPods bool
	// ContainerdAddress is a running containerd to use; empty starts one
	// under the data directory.
	ContainerdAddress string
	// OCIRuntime is the OCI runtime of pods without a RuntimeClass: crun,
	// runc, or auto (crun where installed).
	OCIRuntime string
	// Registries says how images are pulled: mirrors, plain-HTTP
	// registries, extra certificate authorities.
	Registries imagepull.Registries
	// ImageGC removes unused images when the disk holding them fills.
	ImageGC imagepull.GCPolicy
	// ClusterDNS is the nameserver ClusterFirst pods get.
	ClusterDNS string
	// NodePortInterfaces get tc_nodeport, which answers NodePorts for
	// clients on other hosts; nil means the default route's interface,
	// empty (non-nil) none.
	NodePortInterfaces []string
	// Tunnel is how pods reach other nodes' pods (routing.ModeAuto: native
	// on a shared subnet, VXLAN otherwise; vxlan, geneve: always the
	// overlay; disabled: kernel routes only).
	Tunnel routing.Mode
	// LBAlgorithm is how tc_nodeport picks backends (proxy.AlgorithmRandom
	// or proxy.AlgorithmMaglev).
	LBAlgorithm string
	// NodeServerAddress serves logs, exec, attach and port-forward to the
	// API server.
	NodeServerAddress string
	// ociRuntimes are the RuntimeClass handlers this node runs, for
	// Node.status.runtimeHandlers.
	ociRuntimes []string
	// nodeServerPort is where it listens, for Node.status.daemonEndpoints.
	nodeServerPort int
	// kubeconfigServer is the server node.kubeconfig names when the
	// node's clients go through its load balancer (the first of Server).
	kubeconfigServer string
	// Ingress serves the cluster's Ingresses of class petrel on this node
	// (listeners at Ingress.HTTPAddress and HTTPSAddress; both empty: off).
	Ingress ingress.Config
}

// DefaultOptions are the documented defaults.
func DefaultOptions() Options {
	host, _ := os.Hostname()
	return Options{NodeName: strings.ToLower(host), DataDir: "/var/lib/petrel", CgroupRoot: "petrel", LBCgroup: "/",
		LocalDNS: netip.MustParseAddr("169.254.20.10"), ClusterDomain: "cluster.local", MetricsAddress: ":10249",
		LeaseRenewInterval: DefaultLeaseRenewInterval, RunPods: true, ClusterDNS: "10.96.0.10", TrafficCounters: true,
		NodeServerAddress: ":10250", LBAlgorithm: proxy.AlgorithmRandom, Tunnel: routing.ModeAuto,
		Ingress: ingress.DefaultConfig(), OCIRuntime: "auto", ImageGC: imagepull.DefaultGCPolicy()}
}

// Node is a running node daemon.
type Node struct {
	opts    Options
	lb      *bpfobj.SocketLB
	netlink *netlink.Handle
	dns     *dns.Server
	ingress *ingress.Controller
	metrics *http.Server
	runtime *runtime.Containerd
	// resourceMetrics reads the node's and its pods' CPU and memory for
	// /stats/summary and /metrics/resource; kubeletReady is set once the
	// kubelet's pods can be listed.
	resourceMetrics *resourcemetrics.Collector
	kubeletReady    *atomic.Bool
	// addr is the node's address (InternalIP), invalid when it has none.
	addr netip.Addr
	// MetricsURL is where /metrics is served.
	MetricsURL string
	// started is set once Start is done: /healthz answers ok from then on.
	started atomic.Bool
	done    chan struct{}
}

// Start brings the node up and returns once Services are programmed and the
// DNS answers; it runs until ctx ends.
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.NodeName == "" {
		return nil, errors.New("node name is empty: pass --node-name")
	}
	var cfg *rest.Config
	var err error
	var servers *serverlb.LB
	if opts.Server != "" {
		if servers, err = StartServerLB(ctx, opts.Server, filepath.Join(opts.DataDir, ServersFile)); err != nil {
			return nil, err
		}
		slog.Info("node: API servers through the local load balancer", "servers", opts.Server, "via", servers.URL())
		// node.kubeconfig names the first server given (a file usable
		// on its own); the node's own clients dial the load balancer.
		opts.kubeconfigServer, _, _ = strings.Cut(opts.Server, ",")
		opts.Server = servers.URL()
	}
	if opts.Token != "" {
		if cfg, err = join(ctx, opts); err != nil {
			return nil, fmt.Errorf("joining %s with the token: %w", opts.Server, err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags(opts.Server, opts.Kubeconfig); err != nil {
		return nil, fmt.Errorf("read kubeconfig %q (pass --kubeconfig, or --server and --token): %w", opts.Kubeconfig, err)
	}
	cfg.UserAgent = "petrel-node/" + opts.NodeName
	// The kubelet's defaults: status updates and events of many pods
	// starting at once must not queue behind client-go's default of 5/s.
	cfg.QPS, cfg.Burst = 50, 100
	cfg.ContentType = kruntime.ContentTypeProtobuf // as the kubelet speaks
	cfg.AcceptContentTypes = kruntime.ContentTypeProtobuf + "," + kruntime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if servers != nil {
		ca := cfg.TLSClientConfig.CAData
		if len(ca) == 0 && cfg.TLSClientConfig.CAFile != "" {
			ca, _ = os.ReadFile(cfg.TLSClientConfig.CAFile)
		}
		servers.SetCA(ca)
		go servers.Learn(ctx, cs)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n := &Node{opts: opts, done: make(chan struct{})}

	cgroupMount, err := bpfobj.CgroupV2Mount()
	if err != nil {
		return nil, err
	}
	podCgroup := filepath.Join(cgroupMount, opts.CgroupRoot)
	if err := os.MkdirAll(podCgroup, 0o755); err != nil {
		return nil, fmt.Errorf("create the pods' cgroup %s: %w", podCgroup, err)
	}
	pinDir := opts.PinDir
	if pinDir == "" {
		pinDir = bpfobj.PinDir(opts.NodeName)
	}
	lbCgroup := filepath.Join(cgroupMount, opts.LBCgroup)
	if err := os.MkdirAll(lbCgroup, 0o755); err != nil {
		return nil, fmt.Errorf("create the load-balanced cgroup %s: %w", lbCgroup, err)
	}
	slog.Info("node: loading the socket load balancer", "cgroup", lbCgroup, "pins", pinDir)
	n.lb, err = bpfobj.LoadSocketLB(bpfobj.Options{PinDir: pinDir, CgroupPath: lbCgroup})
	if err != nil {
		return nil, fmt.Errorf("load the socket load balancer (needs root and BPF): %w", err)
	}
	if err := bpfobj.SetTrafficCounting(&n.lb.Maps, opts.TrafficCounters); err != nil {
		n.lb.Close()
		return nil, fmt.Errorf("traffic counters: %w", err)
	}

	// tc_pod waits pinned for the CNI plugin to attach it to pod veths.
	if err := bpfobj.LoadPodProgram(pinDir); err != nil {
		n.lb.Close()
		return nil, fmt.Errorf("load the pod program: %w", err)
	}
	if n.netlink, err = netlink.NewHandle(); err != nil {
		n.lb.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	podMTU, err := n.setupTunnel(pinDir)
	if err != nil {
		n.netlink.Close()
		n.lb.Close()
		return nil, fmt.Errorf("overlay to other nodes (pick another with --tunnel): %w", err)
	}
	ifaces, err := nodePortInterfaces(opts.NodePortInterfaces)
	if err == nil {
		err = bpfobj.AttachNodePort(pinDir, ifaces)
	}
	if err != nil {
		n.lb.Close()
		return nil, fmt.Errorf("NodePort for other hosts (pick interfaces with --nodeport-interfaces): %w", err)
	}
	if len(ifaces) > 0 {
		slog.Info("node: NodePorts answer other hosts", "interfaces", ifaces)
	}
	warnNoForwarding(ifaces)
	pcfg := proxy.Config{NodeName: opts.NodeName, LBAlgorithm: opts.LBAlgorithm}
	if opts.LocalDNS.IsValid() {
		pcfg.Redirect = &proxy.LocalRedirect{Namespace: "kube-system", Name: "kube-dns", Address: opts.LocalDNS}
	}
	px, err := proxy.New(pcfg, &n.lb.Maps, proxy.NewMetrics(reg))
	if err != nil {
		n.lb.Close()
		return nil, fmt.Errorf("read back the pinned maps: %w", err)
	}
	// The proxy and the DNS watch the same Services and EndpointSlices:
	// one set of informers receives and decodes each event once for both
	// (two sets were half the node's CPU in a bulk load once the DNS
	// stopped rebuilding everything per change).
	informers := kinformers.NewSharedInformerFactory(cs, 0)
	if err := px.RunShared(ctx, cs, informers); err != nil {
		n.lb.Close()
		return nil, fmt.Errorf("program services: %w", err)
	}
	slog.Info("node: services programmed")

	router, err := routing.New(routing.Config{Self: opts.NodeName, Handle: n.netlink, Mode: opts.Tunnel, PinDir: pinDir,
		NodeAddr: n.addr})
	if err == nil {
		// The node's one set of informers (the proxy's and the DNS's).
		err = router.Run(ctx, informers)
	}
	if err != nil {
		n.netlink.Close()
		n.lb.Close()
		return nil, fmt.Errorf("routes to other nodes' pods: %w", err)
	}
	go collectConntrack(ctx, pinDir, reg)

	// NetworkPolicy: the maps tc_pod, tc_nodeport and tc_tunnel judge by.
	pol, err := policy.New(policy.Config{NodeName: opts.NodeName, PinDir: pinDir, Trace: opts.Trace}, reg)
	if err == nil {
		err = pol.Run(ctx, cs)
	}
	if err != nil {
		n.netlink.Close()
		n.lb.Close()
		return nil, fmt.Errorf("network policy: %w", err)
	}

	if opts.Ingress.HTTPAddress != "" || opts.Ingress.HTTPSAddress != "" {
		opts.Ingress.NodeName = opts.NodeName
		if n.ingress, err = ingress.New(opts.Ingress, cs, reg); err == nil {
			// The node's one set of informers again: Services and
			// EndpointSlices are the proxy's.
			err = n.ingress.Run(ctx, informers)
		}
		if err != nil {
			n.netlink.Close()
			n.lb.Close()
			return nil, fmt.Errorf("ingress: %w", err)
		}
	}

	if opts.LocalDNS.IsValid() {
		if err := n.startDNS(ctx, informers, reg); err != nil {
			n.lb.Close()
			return nil, err
		}
	}
	if err := n.serveMetrics(reg); err != nil {
		n.close()
		return nil, err
	}
	var kl *kubelet.Kubelet
	if opts.RunPods {
		if err := n.startRuntime(ctx); err != nil {
			n.close()
			return nil, err
		}
		hostIP := ""
		for _, a := range nodeAddresses(opts.NodeName) {
			if a.Type == corev1.NodeInternalIP {
				hostIP = a.Address
			}
		}
		if err := opts.Registries.Validate(); err != nil {
			n.close()
			return nil, fmt.Errorf("--registry-ca: %w", err)
		}
		ociRuntimes, err := runtime.DetectOCIRuntimes(opts.OCIRuntime)
		if err != nil {
			n.close()
			return nil, fmt.Errorf("--oci-runtime: %w", err)
		}
		slog.Info("node: OCI runtimes", "default", ociRuntimes.Default, "installed", ociRuntimes.Installed())
		imageGC := opts.ImageGC
		if imageGC.Dir == "" {
			imageGC.Dir = n.runtime.Root
		}
		kl = kubelet.New(kubelet.Config{NodeName: opts.NodeName, DataDir: opts.DataDir, CgroupRoot: opts.CgroupRoot,
			PinDir: pinDir, PodMTU: podMTU, ClusterDNS: opts.ClusterDNS, ClusterDomain: opts.ClusterDomain,
			OCIRuntimes: ociRuntimes, Registries: opts.Registries, ImageGC: imageGC}, cs, n.runtime.Client, hostIP, machineCapacity())
		opts.ociRuntimes = ociRuntimes.Installed()
		// Only the API server (a client certificate from the cluster's CA)
		// may use the node server.
		cas, err := clusterCAs(cfg)
		if err != nil {
			n.close()
			return nil, err
		}
		// The resource metrics read the kubelet's pods only once its
		// informer exists (after kl.Run).
		klReady := &atomic.Bool{}
		klPods := kl
		rm, err := resourcemetrics.NewCollector(resourcemetrics.Config{NodeName: opts.NodeName, CgroupRoot: opts.CgroupRoot,
			Pods: func() []*corev1.Pod {
				if !klReady.Load() {
					return nil
				}
				return klPods.Pods()
			}})
		if err != nil {
			n.close()
			return nil, fmt.Errorf("resource metrics: %w", err)
		}
		n.resourceMetrics, n.kubeletReady = rm, klReady
		if opts.nodeServerPort, err = stream.Serve(ctx, opts.NodeServerAddress, cas, nodeServerHandler(stream.Handler(kl, reg), resourcemetrics.Handler(rm), reg)); err != nil {
			n.close()
			return nil, err
		}
		n.opts = opts
	}
	if err := register(ctx, cs, opts, n.runtime); err != nil {
		n.close()
		return nil, fmt.Errorf("register node %s: %w", opts.NodeName, err)
	}
	go keepLease(ctx, cs, opts, n.runtime)
	if kl != nil {
		if err := kl.Run(ctx); err != nil {
			n.close()
			return nil, fmt.Errorf("kubelet: %w", err)
		}
		n.kubeletReady.Store(true)
		go n.resourceMetrics.Run(ctx)
		slog.Info("node: kubelet running pods", "containerd", n.runtime.Address)
	}
	n.started.Store(true)
	go func() {
		<-ctx.Done()
		n.close()
		close(n.done)
	}()
	return n, nil
}

// setupTunnel finds the uplink (the interface of the node's address) and
// makes the overlay device for opts.Tunnel; it returns the pods' MTU (0:
// petrel-cni's default, when the node has no address).
func (n *Node) setupTunnel(pinDir string) (int, error) {
	for _, a := range nodeAddresses(n.opts.NodeName) {
		if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP && ip.Is4() {
			n.addr = ip
		}
	}
	if !n.addr.IsValid() {
		slog.Warn("node: no default route, so no node address: pods reach no other node")
		return 0, nil
	}
	uplink, err := routing.Uplink(n.netlink, n.addr)
	if err != nil {
		return 0, err
	}
	if err := routing.SetupTunnel(n.netlink, n.opts.Tunnel, uplink, pinDir); err != nil {
		return 0, err
	}
	mtu := routing.PodMTU(uplink.Attrs().MTU, n.opts.Tunnel)
	slog.Info("node: pod network", "uplink", uplink.Attrs().Name, "address", n.addr, "tunnel", n.opts.Tunnel, "podMTU", mtu)
	return mtu, nil
}

// nodePortInterfaces resolves the option: nil is the default route's
// interface (none when there is no default route).
func nodePortInterfaces(given []string) ([]string, error) {
	if given != nil {
		return given, nil
	}
	routes, err := netlink.RouteGet(net.IPv4(192, 0, 2, 1))
	if err != nil || len(routes) == 0 {
		return nil, nil
	}
	l, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return nil, err
	}
	if l.Attrs().Flags&net.FlagLoopback != 0 {
		return nil, nil
	}
	return []string{l.Attrs().Name}, nil
}

// clusterCAs are the certificate authorities of the kubeconfig.
func clusterCAs(cfg *rest.Config) (*x509.CertPool, error) {
	pem := cfg.TLSClientConfig.CAData
	if len(pem) == 0 && cfg.TLSClientConfig.CAFile != "" {
		var err error
		if pem, err = os.ReadFile(cfg.TLSClientConfig.CAFile); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("the kubeconfig has no certificate authority to check the API server's client certificate against")
	}
	return pool, nil
}

// startRuntime starts (or connects to) containerd and imports the images
// dropped in <data-dir>/images.
func (n *Node) startRuntime(ctx context.Context) error {
	var err error
	if n.opts.ContainerdAddress != "" {
		n.runtime, err = runtime.Connect(ctx, n.opts.ContainerdAddress)
	} else {
		n.runtime, err = runtime.Start(ctx, filepath.Join(n.opts.DataDir, "containerd"))
	}
	if err != nil {
		return fmt.Errorf("container runtime: %w", err)
	}
	dir := filepath.Join(n.opts.DataDir, "images")
	names, err := runtime.ImportDir(ctx, n.runtime.Client, dir)
	if err != nil {
		return fmt.Errorf("import images from %s: %w", dir, err)
	}
	if len(names) > 0 {
		slog.Info("node: imported images", "dir", dir, "images", names)
	}
	return nil
}

func (n *Node) startDNS(ctx context.Context, informers kinformers.SharedInformerFactory, reg prometheus.Registerer) error {
	if err := ensureLocalAddress(n.opts.LocalDNS); err != nil {
		return err
	}
	ups := n.opts.DNSUpstreams
	if len(ups) == 0 {
		var err error
		if ups, err = dns.UpstreamsFromResolvConf("/etc/resolv.conf"); err != nil {
			return fmt.Errorf("read /etc/resolv.conf for upstream resolvers (or pass --dns-upstream): %w", err)
		}
	}
	m := dns.NewMetrics(reg)
	h := dns.NewHandler(n.opts.ClusterDomain, dns.NewForwarder(ups, m), m)
	if err := dns.WatchShared(ctx, informers, n.opts.ClusterDomain, h, m); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	srv, err := dns.Listen(netip.AddrPortFrom(n.opts.LocalDNS, 53).String(), h)
	if err != nil {
		return fmt.Errorf("node-local DNS: %w", err)
	}
	n.dns = srv
	slog.Info("node: cluster DNS answering", "address", srv.Addr)
	return nil
}

func (n *Node) serveMetrics(reg *prometheus.Registry) error {
	ln, err := net.Listen("tcp", n.opts.MetricsAddress)
	if err != nil {
		return fmt.Errorf("metrics listener %s (pick another with --metrics-address): %w", n.opts.MetricsAddress, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Healthy means started: the Node registered and the kubelet running,
	// so whoever waits on /healthz (petrel up --nodes, tests) may use the
	// node at once.
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.started.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	if n.opts.Profiling {
		// pprof.Index serves the named profiles (heap, goroutine, ...)
		// under it; CPU profiles and traces need their own handlers.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		slog.Info("node: profiling on", "address", "http://"+ln.Addr().String()+"/debug/pprof/")
	}
	n.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.MetricsURL = "http://" + ln.Addr().String() + "/metrics"
	go func() { _ = n.metrics.Serve(ln) }()
	return nil
}

// close stops serving; the pinned programs and maps keep forwarding.
func (n *Node) close() {
	if n.dns != nil {
		n.dns.Shutdown()
	}
	if n.metrics != nil {
		_ = n.metrics.Close()
	}
	if n.netlink != nil {
		n.netlink.Close()
	}
	if n.runtime != nil {
		n.runtime.Stop()
	}
	n.lb.Close()
}

// Wait blocks until the node has stopped.
func (n *Node) Wait() { <-n.done }

// CleanupPods stops and removes every pod the node left on the machine,
// through the containerd under its data directory (started for the purpose
// when it is not running). It tries every step and reports what failed.
func CleanupPods(ctx context.Context, opts Options) error {
	dir := filepath.Join(opts.DataDir, "containerd")
	if _, err := os.Stat(filepath.Join(dir, "config.toml")); err != nil && opts.ContainerdAddress == "" {
		return nil // this node never ran containerd
	}
	var rt *runtime.Containerd
	var err error
	if opts.ContainerdAddress != "" {
		rt, err = runtime.Connect(ctx, opts.ContainerdAddress)
	} else {
		rt, err = runtime.Start(ctx, dir)
	}
	if err != nil {
		return fmt.Errorf("container runtime for cleanup: %w", err)
	}
	defer rt.Stop()
	var errs []error
	kcfg := kubelet.Config{NodeName: opts.NodeName, DataDir: opts.DataDir, CgroupRoot: opts.CgroupRoot}
	if err := kubelet.Cleanup(ctx, rt.Client, kcfg); err != nil {
		// A container whose start the node's stop cut short can have a
		// task whose runtime state was never written: its shim cannot
		// delete it. Every pod goes anyway, so the shims go first and
		// containerd drops their tasks; then once more.
		slog.Warn("node: cleanup of pods failed; killing their shims and trying again", "err", err)
		if kerr := rt.KillAllShims(ctx, 10*time.Second); kerr != nil {
			errs = append(errs, kerr)
		}
		if err := kubelet.Cleanup(ctx, rt.Client, kcfg); err != nil {
			errs = append(errs, fmt.Errorf("remove pods: %w", err))
		}
	}
	if err := rt.KillStrayShims(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop stray shims: %w", err))
	}
	if err := runtime.RemoveCgroup(opts.CgroupRoot); err != nil {
		errs = append(errs, fmt.Errorf("remove the pods' cgroup %s: %w", opts.CgroupRoot, err))
	}
	return errors.Join(errs...)
}

// Cleanup undoes what a stopped node leaves on the machine: its pods, the
// socket load balancer and pinned maps in pinDir, the tunnel device, the node-local DNS
// address and the pods' cgroup. Every step is tried, whatever failed
// before it (a pod's mount that will not go must not leave the programs
// rewriting connects), and the failures are reported together.
func Cleanup(ctx context.Context, opts Options, pinDir string) error {
	var errs []error
	if err := CleanupPods(ctx, opts); err != nil {
		errs = append(errs, err)
	}
	// The overlay device goes before its pins (the routes through it go
	// with it).
	if h, err := netlink.NewHandle(); err == nil {
		if err := routing.RemoveTunnel(h, pinDir); err != nil {
			errs = append(errs, fmt.Errorf("remove the tunnel device: %w", err))
		}
		h.Close()
	}
	if err := bpfobj.Remove(pinDir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", pinDir, err))
	}
	if opts.LocalDNS.IsValid() {
		if err := RemoveLocalAddress(opts.LocalDNS); err != nil {
			errs = append(errs, err)
		}
	}
	// The pods' cgroup goes when it is empty (no pod runs on this node).
	if root, err := bpfobj.CgroupV2Mount(); err == nil {
		_ = os.Remove(filepath.Join(root, opts.CgroupRoot))
	}
	return errors.Join(errs...)
}

// warnNoForwarding says what does not work while the kernel does not
// forward IPv4: the node leaves that setting to its operator (as kubeadm's
// preflight does) rather than change the machine behind their back.
func warnNoForwarding(ifaces []string) {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) == "0" {
		slog.Warn("node: IPv4 forwarding is off, so pods reach neither other nodes nor the outside; turn it on with: sysctl -w net.ipv4.ip_forward=1")
	}
	for _, ifc := range ifaces {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + ifc + "/forwarding")
		if err == nil && strings.TrimSpace(string(b)) == "0" {
			slog.Warn("node: "+ifc+" does not forward IPv4, so NodePorts it receives reach only backends on this node; turn it on with: sysctl -w net.ipv4.conf."+ifc+".forwarding=1", "interface", ifc)
		}
	}
}

// collectConntrack drops the NodePort connection tracking entries of
// connections that are over, every 10 seconds, while ctx lasts.
func collectConntrack(ctx context.Context, pinDir string, reg prometheus.Registerer) {
	collected := prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_nodeport_conntrack_collected_total",
		Help: "NodePort connection tracking entries dropped because their connection was over."})
	reg.MustRegister(collected)
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ct, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, bpfobj.MapNodePortCT), nil)
		if err != nil {
			continue // no tc_nodeport on this node, or not loaded yet
		}
		n, err := bpfobj.CollectNodePortCT(ct, bpfobj.MonotonicSeconds(), bpfobj.DefaultCTTimeouts)
		ct.Close()
		collected.Add(float64(n))
		if err != nil {
			slog.Warn("node: NodePort connection tracking collection", "err", err)
		}
	}
}

// ServersFile, in the node's data dir, keeps the servers its load
// balancer learned from the kubernetes endpoints.
const ServersFile = "servers"

// StartServerLB starts the node's load balancer of the API servers in
// server (https URLs, comma-separated), keeping what it learns in
// stateFile (empty: not kept); clients dial its URL.
func StartServerLB(ctx context.Context, server, stateFile string) (*serverlb.LB, error) {
	list, err := serverlb.ParseServers(strings.Split(server, ","))
	if err != nil {
		return nil, err
	}
	return serverlb.StartWithState(ctx, list, nil, stateFile)
}

// nodeServerHandler is the node server: resource metrics and the node's
// /metrics beside the streaming endpoints, as on a kubelet's :10250. The
// API server's nodes/proxy reaches them there (metrics-server, the web
// view's BPF traffic), with the same RBAC as any nodes/proxy request.
func nodeServerHandler(streams, metrics http.Handler, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/stats/", metrics)
	mux.Handle("/metrics/resource", metrics)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", streams)
	return mux
}
