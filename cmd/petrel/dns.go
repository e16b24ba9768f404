package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/dns"
)

// dnsCommand is `petrel dns`: the cluster DNS alone, against any Kubernetes API.
func dnsCommand() *cobra.Command {
	var kubeconfig, listen, domain, upstreams, metricsAddr string
	cmd := &cobra.Command{Use: "dns", Short: "Serve the cluster DNS (a drop-in for CoreDNS) against any Kubernetes API", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("reading --kubeconfig %q: %w", kubeconfig, err)
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			var ups []string
			if upstreams != "" {
				for _, u := range strings.Split(upstreams, ",") {
					if !strings.Contains(u, ":") {
						u += ":53"
					}
					ups = append(ups, u)
				}
			} else if ups, err = dns.UpstreamsFromResolvConf("/etc/resolv.conf"); err != nil {
				return fmt.Errorf("reading /etc/resolv.conf for upstream resolvers (or pass --dns-upstream): %w", err)
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			m := dns.NewMetrics(reg)
			h := dns.NewHandler(domain, dns.NewForwarder(ups, m), m)
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if err := dns.Watch(ctx, cs, domain, h, m); err != nil || wctx.Err() != nil {
				return fmt.Errorf("syncing Services and EndpointSlices from %s: %w", cfg.Host, err)
			}
			srv, err := dns.Listen(listen, h)
			if err != nil {
				return err
			}
			defer srv.Shutdown()
			if metricsAddr != "" {
				mux := http.NewServeMux()
				mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				go func() { _ = http.ListenAndServe(metricsAddr, mux) }()
			}
			fmt.Printf("petrel dns: serving %s on %s (udp and tcp), forwarding other names to %v\n", domain, srv.Addr, ups)
			<-ctx.Done()
			return nil
		}}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to serve")
	f.StringVar(&listen, "listen", "169.254.20.10:53", "address to serve on (udp and tcp)")
	f.StringVar(&domain, "cluster-domain", "cluster.local", "the cluster domain")
	f.StringVar(&upstreams, "dns-upstream", "", "comma-separated upstream resolvers (default: nameservers of /etc/resolv.conf)")
	f.StringVar(&metricsAddr, "metrics-listen", "", "address for /metrics (empty: off)")
	return cmd
}
