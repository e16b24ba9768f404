// Command petrel is the one Petrel binary: `petrel up` runs a single-node
// cluster, `petrel server` the control plane, `petrel node` a node,
// `petrel dns` the cluster DNS alone, `petrel kubectl` kubectl with the admin
// kubeconfig.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/petrel-project/petrel/cni"
	"github.com/petrel-project/petrel/controlplane/controllers/podautoscaler"
	"github.com/petrel-project/petrel/controlplane/server"
	"github.com/petrel-project/petrel/dataplane/containerlog"
	"github.com/petrel-project/petrel/dataplane/node"
)

func main() {
	// The node links petrel-cni to this binary, so that libcni finds its
	// plugin without a second install.
	switch filepath.Base(os.Args[0]) {
	case "petrel-cni":
		cni.PluginMain()
		return
	case containerlog.LoggerName:
		if err := containerlog.RunLogger(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if len(os.Args) > 1 && os.Args[1] == "kubectl" {
		os.Exit(runKubectl(os.Args[2:]))
	}
	root := &cobra.Command{Use: "petrel", Short: "Petrel: a Kubernetes-compatible cluster with an eBPF data plane", SilenceUsage: true}
	root.AddCommand(serverCommand("up", "Run a single-node cluster: the control plane and a node in one process"),
		serverCommand("server", "Run the control plane: etcd, API server and controllers"),
		nodeCommand(),
		tokenCommand(),
		&cobra.Command{Use: "kubectl", Short: "Run kubectl with the admin kubeconfig", DisableFlagParsing: true},
		dnsCommand(),
		&cobra.Command{Use: "version", Short: "Print the version", Run: func(*cobra.Command, []string) {
			fmt.Printf("petrel %s (Kubernetes API %s.%s)\n", server.Version.GitVersion, server.Version.Major, server.Version.Minor)
		}})
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

func serverCommand(use, short string) *cobra.Command {
	opts := server.DefaultOptions()
	withNode := use == "up"
	var nf nodeFlags
	var mf multiNodeFlags
	var clusterInit bool
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		switch {
		case clusterInit && opts.Join != "":
			return fmt.Errorf("--cluster-init starts a new cluster and --join joins one: give one of them")
		case opts.Join != "" && opts.Token == "":
			return fmt.Errorf("--join needs --token, a server token (the joined server's <data-dir>/%s)", server.ServerTokenFile)
		case opts.Join == "" && opts.Token != "":
			return fmt.Errorf("--token needs --join https://HOST:6443, the server to join")
		}
		nopts, err := nf.resolve()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if mf.cleanup {
			return cleanupMultiNode(ctx, opts.DataDir)
		}
		if mf.nodes > 0 {
			return runMultiNode(ctx, opts, mf)
		}
		fmt.Fprintf(os.Stderr, "petrel: starting the control plane in %s ...\n", opts.DataDir)
		s, err := server.Start(ctx, opts)
		if err != nil {
			return err
		}
		var n *node.Node
		if withNode {
			nopts.Kubeconfig, nopts.DataDir = s.Kubeconfig, opts.DataDir
			fmt.Fprintf(os.Stderr, "petrel: starting node %s (pods, socket load balancer, cluster DNS) ...\n", nopts.NodeName)
			n, err = node.Start(ctx, nopts)
			if err != nil {
				s.Stop()
				return err
			}
			printNodeReady(nopts, n)
		}
		fmt.Printf("\nPetrel is up: API server at %s\n", s.URL)
		fmt.Printf("  kubeconfig: %s\n", s.Kubeconfig)
		fmt.Printf("  try:        export KUBECONFIG=%s; kubectl get namespaces\n", s.Kubeconfig)
		fmt.Printf("         or:  petrel kubectl --data-dir %s get namespaces   (Ctrl-C stops the cluster)\n", opts.DataDir)
		fmt.Printf("  join nodes: petrel node --server https://<this host>:%d --token \"$(cat %s)\"\n",
			s.Port, filepath.Join(opts.DataDir, server.NodeTokenFile))
		if !withNode {
			fmt.Printf("  join servers: petrel server --join https://<this host>:%d --token \"$(cat %s)\"\n", s.Port, filepath.Join(opts.DataDir, server.ServerTokenFile))
		}
		fmt.Println()
		go func() {
			<-ctx.Done()
			// The node first (it stops its containerd in order; pods go on),
			// then the control plane.
			if n != nil {
				n.Wait()
			}
			s.Stop()
		}()
		err = s.Wait()
		if withNode {
			// By design, so that the data path outlives the daemon; but a user
			// who stops a cluster for good should know what remains.
			fmt.Fprintf(os.Stderr, "\npetrel: stopped. The pods, the socket load balancer (Services keep answering on this machine) and the cluster DNS address %s stay for the next start.\n"+
				"  To remove them: petrel node --cleanup --data-dir %s --node-name %s\n", nopts.LocalDNS, opts.DataDir, nopts.NodeName)
		}
		return err
	}}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", opts.DataDir, "directory for etcd data, certificates and the admin kubeconfig")
	f.StringVar(&opts.BindAddress, "bind-address", opts.BindAddress, "address the API server listens on")
	f.StringVar(&opts.AdvertiseAddress, "advertise-address", "", "address nodes and pods reach the API server at (the kubernetes Service's endpoint; default: the bind address, else the default route's source)")
	f.IntVar(&opts.SecurePort, "secure-port", opts.SecurePort, "HTTPS port of the API server (0 picks a free one)")
	f.StringSliceVar(&opts.EtcdEndpoints, "etcd-endpoints", nil, "external etcd client URLs; empty runs an embedded etcd under --data-dir")
	f.StringVar(&opts.EtcdClientURL, "etcd-client-url", "", "client URL of the embedded etcd, https only: it asks for client certificates from its own CA in <data-dir>/pki/etcd (default https://127.0.0.1:2379)")
	f.StringVar(&opts.EtcdPeerURL, "etcd-peer-url", "", "peer URL of the embedded etcd, https only (default https://127.0.0.1:2380)")
	f.StringVar(&opts.EtcdCAFile, "etcd-cafile", "", "with --etcd-endpoints: CA of the external etcd's serving certificates")
	f.StringVar(&opts.EtcdCertFile, "etcd-certfile", "", "with --etcd-endpoints: client certificate for the external etcd")
	f.StringVar(&opts.EtcdKeyFile, "etcd-keyfile", "", "with --etcd-endpoints: key of --etcd-certfile")
	f.StringVar(&opts.EncryptionProviderConfig, "encryption-provider-config", "", "a Kubernetes EncryptionConfiguration file (providers aesgcm, aescbc, secretbox, identity) saying which resources are encrypted in etcd; give every server the same file (default: <data-dir>/pki/encryption-config.yaml, made at first start: Secrets under AES-GCM, handed to joining servers)")
	f.BoolVar(&opts.SecretsEncryption, "secrets-encryption", opts.SecretsEncryption, "encrypt Secrets in etcd with the key made at first start (ignored when --encryption-provider-config is given)")
	f.StringVar(&opts.PodSecurityDefault, "pod-security-default", opts.PodSecurityDefault, "Pod Security Standard (privileged, baseline or restricted) enforced, audited and warned at in namespaces without pod-security.kubernetes.io/* labels; kube-system is exempt")
	f.StringVar(&opts.PodSecurityConfigFile, "pod-security-admission-config-file", "", "a PodSecurityConfiguration file (pod-security.admission.config.k8s.io/v1: defaults and exemptions) used instead of --pod-security-default")
	f.StringVar(&opts.AuditLogPath, "audit-log-path", "", "audit events as JSON lines (audit.k8s.io/v1) go here; \"-\" is standard output, \"none\" keeps no audit log (default <data-dir>/logs/audit.log)")
	f.StringVar(&opts.AuditPolicyFile, "audit-policy-file", "", "an audit.k8s.io/v1 Policy saying what is recorded at which level (default: Metadata for every request but health probes, lease renewals and the reads of nodes and admins, no RequestReceived stage)")
	f.IntVar(&opts.AuditLogMaxSize, "audit-log-maxsize", opts.AuditLogMaxSize, "megabytes the audit log grows to before it is rotated")
	f.IntVar(&opts.AuditLogMaxBackup, "audit-log-maxbackup", opts.AuditLogMaxBackup, "rotated audit logs kept (0: all)")
	f.IntVar(&opts.AuditLogMaxAge, "audit-log-maxage", opts.AuditLogMaxAge, "days a rotated audit log is kept (0: no limit)")
	f.StringSliceVar(&opts.TLSSANs, "tls-san", nil, "more names or addresses in the API server's serving certificate (a load balancer's, a DNS name of all servers), comma-separated or repeated")
	f.StringVar(&opts.ClusterResetRestorePath, "cluster-reset-restore-path", "", "restore the embedded etcd from this snapshot (petrelctl etcd snapshot save, or a scheduled one) before it starts: a new one-member cluster with the snapshot's data; the old member's data is moved to <data-dir>/etcd.old-<time>; the other servers join again with fresh data dirs")
	f.StringVar(&opts.EtcdSnapshotSchedule, "etcd-snapshot-schedule", "", "take etcd snapshots on a schedule: an interval (30m, 6h) or a cron spec (\"0 */6 * * *\", @hourly, \"@every 30m\"); empty: none")
	f.IntVar(&opts.EtcdSnapshotRetention, "etcd-snapshot-retention", opts.EtcdSnapshotRetention, "scheduled snapshots kept (the oldest are removed; 0 keeps all)")
	f.StringVar(&opts.EtcdSnapshotDir, "etcd-snapshot-dir", "", "directory of the scheduled snapshots (default <data-dir>/db/snapshots)")
	f.StringVar(&opts.ServiceCIDR, "service-cidr", opts.ServiceCIDR, "range of Service ClusterIPs")
	f.StringVar(&opts.ClusterCIDR, "cluster-cidr", opts.ClusterCIDR, "range of pod addresses, a /24 per node")
	f.StringVar(&opts.NodePortRange, "service-node-port-range", opts.NodePortRange, "range of NodePorts")
	f.DurationVar(&opts.HPASyncPeriod, "horizontal-pod-autoscaler-sync-period", podautoscaler.DefaultSyncPeriod, "how often each HorizontalPodAutoscaler's metrics are read and its target scaled")
	f.DurationVar(&opts.NodeMonitorGracePeriod, "node-monitor-grace-period", opts.NodeMonitorGracePeriod, "how long a node may stay silent before it is marked NotReady (Unknown) and tainted unreachable")
	f.StringVar(&opts.AuthorizationMode, "authorization-mode", opts.AuthorizationMode, "RBAC (Roles and bindings decide what each user may do; system:masters may do everything) or AlwaysAllow (every authenticated client may do everything)")
	f.IntVar(&opts.MaxRequestsInflight, "max-requests-inflight", 0, "reads served at once before more are answered 429 (system:masters and watches aside; 0: 400, as Kubernetes)")
	f.IntVar(&opts.MaxMutatingRequestsInflight, "max-mutating-requests-inflight", 0, "writes served at once before more are answered 429 (system:masters aside; 0: 200, as Kubernetes)")
	f.StringVar(&opts.DefaultLocalStoragePath, "default-local-storage-path", "", "directory on each node under which the default StorageClass (local) makes a volume for each claim (default <data-dir>/storage)")
	f.BoolVar(&opts.EnablePriorityAndFairness, "enable-priority-and-fairness", opts.EnablePriorityAndFairness, "classify requests by FlowSchemas into priority levels that share the --max-requests-inflight plus --max-mutating-requests-inflight seats, queuing or answering 429 past a level's share (false: the two plain limits)")
	f.IntVar(&opts.MaxConnections, "max-connections", 0, "connections the API port holds; past it, the oldest silent ones are closed for new ones or new ones refused (0: three quarters of the open-file limit after a reserve)")
	f.StringVar(&opts.LBPool, "lb-pool", "", "addresses for LoadBalancer Services: CIDR or FIRST-LAST, comma-separated (empty: they stay pending)")
	f.StringVar(&opts.IngressService, "ingress-service", "", "NAMESPACE/NAME of a LoadBalancer Service the server keeps in front of the nodes' ingress (ports 80, 443); its address from --lb-pool becomes the Ingresses' status (empty: the nodes' addresses)")
	if !withNode {
		f.BoolVar(&clusterInit, "cluster-init", false, "start a new cluster: make its CA, service-account key and etcd CA, and the token other servers join with (<data-dir>/server-token); the default without --join")
		f.StringVar(&opts.Join, "join", "", "join the cluster of this server (https://HOST:6443) instead of starting one: receive its CA and keys, and add this server's embedded etcd member to its etcd (needs --token)")
		f.StringVar(&opts.Token, "token", "", "with --join: a server token, K10<ca-hash>::<id>.<secret> (the joined server's <data-dir>/server-token)")
	}
	if withNode {
		nf.add(f, false)
		f.IntVar(&mf.nodes, "nodes", 0, "run N nodes, each in its own network namespace on a bridge (198.51.100.0/24), instead of one node in this process; the server stays in this namespace")
		f.IntVar(&mf.segments, "segments", 1, "with --nodes: spread the nodes over S segments (1 or 2; the second is 203.0.113.0/24 behind a router namespace, so traffic between segments goes through the overlay)")
		f.BoolVar(&mf.cleanup, "cleanup", false, "remove what a crashed petrel up --nodes left: node namespaces, their pods, maps, links and cgroups")
	}
	return cmd
}

// kubectlHelper is the binary `petrel kubectl` runs: k8s.io/kubectl's
// commands, built apart so that the daemons do not carry them.
const kubectlHelper = "petrel-kubectl"

// runKubectl replaces this process with petrel-kubectl from beside this
// binary (where make build puts it) or else from PATH, so that kubectl
// keeps the terminal, signals and exit status as if run directly.
func runKubectl(args []string) int {
	path := ""
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), kubectlHelper); isExecutable(p) {
			path = p
		}
	}
	if path == "" {
		p, err := exec.LookPath(kubectlHelper)
		if err != nil {
			fmt.Fprintf(os.Stderr, "petrel kubectl: %s is neither beside this binary nor on PATH; build it with `make build` (or `go build ./cmd/petrel-kubectl`) and put it next to petrel\n", kubectlHelper)
			return 1
		}
		path = p
	}
	err := syscall.Exec(path, append([]string{kubectlHelper}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "petrel kubectl: running %s: %v\n", path, err)
	return 1
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
