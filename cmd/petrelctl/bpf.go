package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/lbview"
)

// mapFlags locate a node's pinned maps.
type mapFlags struct {
	node, pinDir, output string
}

func (f *mapFlags) add(cmd *cobra.Command) {
	host, _ := os.Hostname()
	cmd.PersistentFlags().StringVar(&f.node, "node-name", strings.ToLower(host), "the node whose pinned maps to read")
	cmd.PersistentFlags().StringVar(&f.pinDir, "pin-dir", "", "the pin directory (default /sys/fs/bpf/petrel/<node-name>)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "table", "table or json")
}

func (f *mapFlags) open() (*bpfobj.Maps, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("-o must be table or json, not %q", f.output)
	}
	dir := f.pinDir
	if dir == "" {
		dir = bpfobj.PinDir(f.node)
	}
	return bpfobj.OpenPinned(dir)
}

// print writes v as JSON, or calls table with a tab writer.
func (f *mapFlags) print(w io.Writer, v any, table func(tw *tabwriter.Writer)) error {
	if f.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func bpfCommand() *cobra.Command {
	var f mapFlags
	cmd := &cobra.Command{Use: "bpf", Short: "Read the node's pinned BPF maps (works while the node daemon is down)"}
	f.add(cmd)

	lb := &cobra.Command{Use: "lb", Short: "The service load balancer's maps"}
	var frontendsOnly, backendsOnly, revnatOnly bool
	lbList := &cobra.Command{Use: "list", Short: "Frontends with their backends (id, slot, state) and rev-NAT id",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case backendsOnly:
				return show(&f, cmd, lbview.Backends, func(tw *tabwriter.Writer, rows []lbview.Backend) {
					fmt.Fprintln(tw, "ID\tBACKEND\tSTATE")
					for _, b := range rows {
						fmt.Fprintf(tw, "%d\t%s\t%s\n", b.ID, b.Address, b.State)
					}
				})
			case revnatOnly:
				return show(&f, cmd, lbview.RevNats, func(tw *tabwriter.Writer, rows []lbview.RevNat) {
					fmt.Fprintln(tw, "ID\tSERVICE ADDRESS")
					for _, r := range rows {
						fmt.Fprintf(tw, "%d\t%s\n", r.ID, r.Address)
					}
				})
			case frontendsOnly:
				return show(&f, cmd, lbview.Frontends, func(tw *tabwriter.Writer, rows []lbview.Frontend) {
					fmt.Fprintln(tw, "FRONTEND\tREV-NAT ID\tBACKENDS\tFLAGS")
					for _, r := range rows {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.Frontend, r.RevNatID, len(r.Backends), flags(r))
					}
				})
			}
			return show(&f, cmd, lbview.Frontends, func(tw *tabwriter.Writer, rows []lbview.Frontend) {
				fmt.Fprintln(tw, "FRONTEND\tREV-NAT ID\tSLOT\tBACKEND ID\tBACKEND\tSTATE\tFLAGS")
				for _, r := range rows {
					if len(r.Backends) == 0 {
						fmt.Fprintf(tw, "%s\t%d\t-\t-\t(none: connects are refused)\t-\t%s\n", r.Frontend, r.RevNatID, flags(r))
					}
					for i, b := range r.Backends {
						name, fl := r.Frontend, flags(r)
						if i > 0 {
							name, fl = "", ""
						}
						fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", name, r.RevNatID, b.Slot, b.ID, b.Address, b.State, fl)
					}
				}
			})
		}}
	lbList.Flags().BoolVar(&frontendsOnly, "frontends", false, "only the frontends (service entries)")
	lbList.Flags().BoolVar(&backendsOnly, "backends", false, "only the backend map")
	lbList.Flags().BoolVar(&revnatOnly, "revnat", false, "only the reverse-NAT map")
	lbList.MarkFlagsMutuallyExclusive("frontends", "backends", "revnat")
	lb.AddCommand(lbList)
	cmd.AddCommand(lb)

	ct := &cobra.Command{Use: "ct", Short: "Connections the load balancer translated"}
	ct.AddCommand(&cobra.Command{Use: "list", Short: "Sockets translated at connect/sendmsg: socket cookie, backend, the frontend it maps to",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(&f, cmd, lbview.Sockets, func(tw *tabwriter.Writer, rows []lbview.Socket) {
				fmt.Fprintln(tw, "SOCKET COOKIE\tBACKEND\tFRONTEND\tREV-NAT ID")
				for _, s := range rows {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", s.Cookie, s.Backend, s.Frontend, s.RevNatID)
				}
			})
		}})
	ct.AddCommand(&cobra.Command{Use: "nodeport", Short: "NodePort connections from other hosts (tc_nodeport): client, node address and port, backend, interface, SNAT toward a remote backend, idle time, open or closing",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(&f, cmd, lbview.NodePortFlows, func(tw *tabwriter.Writer, rows []lbview.NodePortFlow) {
				fmt.Fprintln(tw, "CLIENT\tFRONTEND\tBACKEND\tPROTOCOL\tINTERFACE\tSNAT\tIDLE\tSTATE")
				for _, r := range rows {
					snat := r.SNAT
					if snat == "" {
						snat = "-"
					}
					state := "open"
					if r.Closing {
						state = "closing"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%ds\t%s\n", r.Client, r.Frontend, r.Backend, r.Protocol, r.Interface, snat, r.IdleSeconds, state)
				}
			})
		}})
	cmd.AddCommand(ct)

	tunnel := &cobra.Command{Use: "tunnel", Short: "The way to other nodes' pods (petrel_tunnel, kept from the Node objects)"}
	tunnel.AddCommand(&cobra.Command{Use: "list", Short: "Each other node's podCIDR: node address, native (bpf_redirect_neigh) or overlay (vxlan, geneve), interface",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			read := func(m *bpfobj.Maps) ([]bpfobj.TunnelEntry, error) {
				rows, err := tunnelEntries(m)
				if err == nil {
					nameInNodeNetns(rows, f.node)
				}
				return rows, err
			}
			return show(&f, cmd, read, func(tw *tabwriter.Writer, rows []bpfobj.TunnelEntry) {
				fmt.Fprintln(tw, "POD CIDR\tNODE\tHOW\tINTERFACE")
				for _, r := range rows {
					ifc := r.Interface
					if ifc == "" {
						ifc = fmt.Sprintf("#%d", r.Ifindex)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.PodCIDR, r.NodeAddr, r.How, ifc)
				}
			})
		}})
	tunnel.AddCommand(&cobra.Command{Use: "stats", Short: "Packets per cross-node path since the maps were made (petrel_fwd_stats)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(&f, cmd, forwardStats, func(tw *tabwriter.Writer, rows []forwardStat) {
				fmt.Fprintln(tw, "PATH\tPACKETS")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%d\n", r.Path, r.Packets)
				}
			})
		}})
	cmd.AddCommand(tunnel)

	pol := &cobra.Command{Use: "policy", Short: "The node's NetworkPolicy maps"}
	pol.AddCommand(policyListCommand(&f))
	cmd.AddCommand(pol)

	cmd.AddCommand(&cobra.Command{Use: "maps", Short: "Every map: type, entries, capacity, pressure",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(&f, cmd, lbview.Maps, func(tw *tabwriter.Writer, rows []lbview.Map) {
				fmt.Fprintln(tw, "NAME\tTYPE\tENTRIES\tCAPACITY\tPRESSURE")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f%%\n", r.Name, r.Type, r.Entries, r.Capacity, 100*r.Pressure)
				}
			})
		}})
	return cmd
}

// nameInNodeNetns names the rows' interfaces in the node's own network
// namespace when it has one named after it (/run/netns/<node>, as `petrel
// up --nodes` and the multi-node tests make): read from the root namespace,
// the same index names another device.
func nameInNodeNetns(rows []bpfobj.TunnelEntry, node string) {
	ns, err := netns.GetFromPath(filepath.Join("/run/netns", node))
	if err != nil {
		return
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return
	}
	defer h.Close()
	for i := range rows {
		rows[i].Interface = ""
		if l, err := h.LinkByIndex(int(rows[i].Ifindex)); err == nil {
			rows[i].Interface = l.Attrs().Name
		}
	}
}

// tunnelEntries reads petrel_tunnel, sorted by podCIDR.
func tunnelEntries(m *bpfobj.Maps) ([]bpfobj.TunnelEntry, error) {
	tm := m.Pod[bpfobj.MapTunnel]
	if tm == nil {
		return nil, fmt.Errorf("no pinned %s: the node has not loaded tc_pod (or runs an older petrel)", bpfobj.MapTunnel)
	}
	rows, err := bpfobj.TunnelEntries(tm)
	if err != nil {
		return nil, err
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].PodCIDR.Addr().Less(rows[j].PodCIDR.Addr()) })
	if rows == nil {
		rows = []bpfobj.TunnelEntry{}
	}
	return rows, nil
}

// forwardStat is one path's packet count.
type forwardStat struct {
	Path    string `json:"path"`
	Packets uint64 `json:"packets"`
}

func forwardStats(m *bpfobj.Maps) ([]forwardStat, error) {
	sm := m.Pod[bpfobj.MapForwardStats]
	if sm == nil {
		return nil, fmt.Errorf("no pinned %s: the node has not loaded tc_pod (or runs an older petrel)", bpfobj.MapForwardStats)
	}
	counts, err := bpfobj.ForwardStats(sm)
	if err != nil {
		return nil, err
	}
	rows := make([]forwardStat, 0, len(counts))
	for _, name := range bpfobj.ForwardStatNames {
		rows = append(rows, forwardStat{Path: name, Packets: counts[name]})
	}
	return rows, nil
}

// show opens the pinned maps, reads rows from them and prints them as a
// table or JSON.
func show[T any](f *mapFlags, cmd *cobra.Command, read func(*bpfobj.Maps) (T, error), table func(*tabwriter.Writer, T)) error {
	m, err := f.open()
	if err != nil {
		return err
	}
	defer m.Close()
	rows, err := read(m)
	if err != nil {
		return err
	}
	return f.print(cmd.OutOrStdout(), rows, func(tw *tabwriter.Writer) { table(tw, rows) })
}

func flags(r lbview.Frontend) string {
	s := strings.Join(r.Flags, ",")
	if r.AffinityTimeout > 0 {
		s += " timeout=" + strconv.Itoa(int(r.AffinityTimeout)) + "s"
	}
	if s == "" {
		return "-"
	}
	return s
}

// serviceRow joins a Service with the BPF frontends it should have.
type serviceRow struct {
	Namespace  string           `json:"namespace"`
	Name       string           `json:"name"`
	Type       string           `json:"type"`
	Frontend   string           `json:"frontend"`
	RevNatID   uint16           `json:"revNatID,omitempty"`
	Programmed bool             `json:"programmed"`
	Backends   []lbview.Backend `json:"backends"`
	// Traffic is the frontend's counters (--stats only).
	Traffic *lbview.Counters `json:"traffic,omitempty"`
}

func serviceCommand() *cobra.Command {
	var f mapFlags
	var kubeconfig string
	var stats bool
	cmd := &cobra.Command{Use: "service", Short: "Services joined with their BPF frontends"}
	f.add(cmd)
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", defaultKubeconfig(), "kubeconfig of the cluster")
	list := &cobra.Command{Use: "list", Short: "Each Service's frontends (ClusterIP, NodePort, external) with the backends the maps hold",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			rows, err := serviceRows(ctx, &f, kubeconfig, stats)
			if err != nil {
				return err
			}
			return f.print(cmd.OutOrStdout(), rows, func(tw *tabwriter.Writer) {
				if stats {
					printServiceStats(tw, rows)
					return
				}
				fmt.Fprintln(tw, "NAMESPACE\tNAME\tTYPE\tFRONTEND\tREV-NAT ID\tBACKENDS")
				for _, r := range rows {
					var bs []string
					for _, b := range r.Backends {
						bs = append(bs, fmt.Sprintf("%s (%d)", b.Address, b.ID))
					}
					backends := strings.Join(bs, ", ")
					switch {
					case !r.Programmed:
						backends = "(not in the maps)"
					case len(bs) == 0:
						backends = "(none: connects are refused)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Namespace, r.Name, r.Type, r.Frontend, r.RevNatID, backends)
				}
			})
		}}
	list.Flags().BoolVar(&stats, "stats", false, "also each frontend's and backend's traffic: new connections, packets and bytes the BPF load balancer counted, with the backends' pods")
	cmd.AddCommand(list)
	return cmd
}

// serviceFrontends names the frontends a Service should have, as lbview
// names them.
func serviceFrontends(s *corev1.Service) []string {
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	var out []string
	for _, p := range s.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		for _, ip := range ips {
			if ip != "None" && !strings.Contains(ip, ":") {
				out = append(out, fmt.Sprintf("%s:%d/%s", ip, p.Port, proto))
			}
		}
		if p.NodePort != 0 {
			out = append(out, fmt.Sprintf("*:%d/%s", p.NodePort, proto))
		}
		ext := append([]string{}, s.Spec.ExternalIPs...)
		for _, ing := range s.Status.LoadBalancer.Ingress {
			if ing.IP != "" {
				ext = append(ext, ing.IP)
			}
		}
		for _, ip := range ext {
			out = append(out, fmt.Sprintf("%s:%d/%s", ip, p.Port, proto))
		}
	}
	return out
}

func defaultKubeconfig() string {
	if k := os.Getenv("KUBECONFIG"); k != "" {
		return k
	}
	return "/var/lib/petrel/admin.kubeconfig"
}
