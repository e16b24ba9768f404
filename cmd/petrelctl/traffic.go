package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/dataplane/lbview"
)

// serviceRows joins the cluster's Services with the frontends in the
// node's maps; with stats, also the traffic counters and backend pods.
func serviceRows(ctx context.Context, f *mapFlags, kubeconfig string, stats bool) ([]serviceRow, error) {
	m, err := f.open()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	fronts, err := lbview.Frontends(m)
	if err != nil {
		return nil, err
	}
	if stats {
		if err := lbview.AddTraffic(m, fronts); err != nil {
			return nil, err
		}
	}
	byName := map[string]lbview.Frontend{}
	for _, fr := range fronts {
		byName[fr.Frontend] = fr
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w (give --kubeconfig)", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	svcs, err := cs.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	pods := map[string]string{} // endpoint address → pod
	if stats {
		slices, err := cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list endpoint slices: %w", err)
		}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
					continue
				}
				for _, a := range ep.Addresses {
					pods[a] = ep.TargetRef.Namespace + "/" + ep.TargetRef.Name
				}
			}
		}
	}
	var rows []serviceRow
	for _, s := range svcs.Items {
		for _, name := range serviceFrontends(&s) {
			r := serviceRow{Namespace: s.Namespace, Name: s.Name, Type: string(s.Spec.Type), Frontend: name, Backends: []lbview.Backend{}}
			if fr, ok := byName[name]; ok {
				r.Programmed, r.RevNatID, r.Backends, r.Traffic = true, fr.RevNatID, fr.Backends, fr.Traffic
				for i := range r.Backends {
					if host, _, err := net.SplitHostPort(r.Backends[i].Address); err == nil {
						if p, ok := pods[host]; ok {
							_, r.Backends[i].Pod, _ = strings.Cut(p, "/")
						}
					}
				}
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// printServiceStats is `service list --stats`: a line per frontend with its
// totals, then a line per backend.
func printServiceStats(tw *tabwriter.Writer, rows []serviceRow) {
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tFRONTEND\tBACKEND\tPOD\tCONNECTIONS\tPACKETS\tBYTES")
	for _, r := range rows {
		c := r.Traffic
		if c == nil {
			c = &lbview.Counters{}
		}
		backends := "(all)"
		if !r.Programmed {
			backends = "(not in the maps)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t%d\t%d\t%d\n", r.Namespace, r.Name, r.Frontend, backends, c.Connections, c.Packets, c.Bytes)
		for _, b := range r.Backends {
			bc := b.Traffic
			if bc == nil {
				bc = &lbview.Counters{}
			}
			pod := b.Pod
			if pod == "" {
				pod = "-"
			}
			fmt.Fprintf(tw, "\t\t\t%s\t%s\t%d\t%d\t%d\n", b.Address, pod, bc.Connections, bc.Packets, bc.Bytes)
		}
	}
}

// topRow is one Service's traffic over the last refresh: rates per second
// and the totals so far.
type topRow struct {
	Namespace      string  `json:"namespace"`
	Name           string  `json:"name"`
	Frontends      int     `json:"frontends"`
	Backends       int     `json:"backends"`
	ConnectionsPS  float64 `json:"connectionsPerSecond"`
	PacketsPS      float64 `json:"packetsPerSecond"`
	BytesPS        float64 `json:"bytesPerSecond"`
	Connections    uint64  `json:"connections"`
	Packets        uint64  `json:"packets"`
	Bytes          uint64  `json:"bytes"`
	previous, seen bool
}

func topCommand() *cobra.Command {
	var f mapFlags
	var kubeconfig string
	var interval time.Duration
	var iterations int
	cmd := &cobra.Command{Use: "top", Short: "Live views of the node, refreshed like top"}
	f.add(cmd)
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", defaultKubeconfig(), "kubeconfig of the cluster")
	svc := &cobra.Command{Use: "services", Aliases: []string{"service", "svc"},
		Short: "Services by traffic through this node's BPF load balancer: connections, packets and bytes per second, and totals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return fmt.Errorf("--interval must be positive, not %s", interval)
			}
			return runTop(cmd.Context(), cmd.OutOrStdout(), &f, kubeconfig, interval, iterations)
		}}
	svc.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between refreshes")
	svc.Flags().IntVarP(&iterations, "iterations", "n", 0, "refreshes before exiting (0: until interrupted); each prints the rates since the one before")
	cmd.AddCommand(svc)
	return cmd
}

// runTop reads the counters every interval and prints each Service's rates
// since the read before (the first screen shows totals with rates left
// blank). On a terminal with -o table the screen is cleared between reads.
func runTop(ctx context.Context, w io.Writer, f *mapFlags, kubeconfig string, interval time.Duration, iterations int) error {
	prev := map[string]topRow{}
	var last time.Time
	for i := 0; iterations == 0 || i <= iterations; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(interval):
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rows, err := serviceRows(rctx, f, kubeconfig, true)
		cancel()
		if err != nil {
			return err
		}
		now := time.Now()
		cur := map[string]topRow{}
		for _, r := range rows {
			key := r.Namespace + "/" + r.Name
			t := cur[key]
			t.Namespace, t.Name = r.Namespace, r.Name
			t.Frontends++
			t.Backends += len(r.Backends)
			if r.Traffic != nil {
				t.Connections += r.Traffic.Connections
				t.Packets += r.Traffic.Packets
				t.Bytes += r.Traffic.Bytes
			}
			cur[key] = t
		}
		out := make([]topRow, 0, len(cur))
		secs := now.Sub(last).Seconds()
		for key, t := range cur {
			if p, ok := prev[key]; ok && !last.IsZero() && secs > 0 {
				t.previous = true
				t.ConnectionsPS = rate(t.Connections, p.Connections, secs)
				t.PacketsPS = rate(t.Packets, p.Packets, secs)
				t.BytesPS = rate(t.Bytes, p.Bytes, secs)
			}
			out = append(out, t)
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].ConnectionsPS != out[j].ConnectionsPS {
				return out[i].ConnectionsPS > out[j].ConnectionsPS
			}
			if out[i].Connections != out[j].Connections {
				return out[i].Connections > out[j].Connections
			}
			return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
		})
		// The first read is the baseline: a rate needs a second one.
		if i > 0 || iterations == 0 {
			if err := printTop(w, f, out, now, interval); err != nil {
				return err
			}
		}
		prev, last = cur, now
	}
	return nil
}

// rate is the per-second change of a counter; a counter that went down
// (its backend's counters were reset) counts from zero.
func rate(now, before uint64, secs float64) float64 {
	if now < before {
		return float64(now) / secs
	}
	return float64(now-before) / secs
}

func printTop(w io.Writer, f *mapFlags, rows []topRow, now time.Time, interval time.Duration) error {
	if f.output == "json" {
		return f.print(w, map[string]any{"time": now.UTC().Format(time.RFC3339), "services": rows}, nil)
	}
	if isTerminal(w) {
		fmt.Fprint(w, "\033[H\033[2J") // home and clear, as top redraws
	}
	fmt.Fprintf(w, "petrelctl top services — node %s — %s, every %s\n\n", f.node, now.Format("15:04:05"), interval)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tFRONTENDS\tBACKENDS\tCONN/S\tPKT/S\tBYTES/S\tCONNECTIONS\tPACKETS\tBYTES")
	for _, r := range rows {
		cps, pps, bps := "-", "-", "-"
		if r.previous {
			cps, pps, bps = strconv.FormatFloat(r.ConnectionsPS, 'f', 1, 64), strconv.FormatFloat(r.PacketsPS, 'f', 1, 64), humanBytes(r.BytesPS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%d\n", r.Namespace, r.Name, r.Frontends, r.Backends, cps, pps, bps,
			r.Connections, r.Packets, r.Bytes)
	}
	return tw.Flush()
}

func humanBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1fG", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fM", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1fK", b/(1<<10))
	}
	return fmt.Sprintf("%.0f", b)
}

// isTerminal reports whether w is a terminal, where redrawing makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
