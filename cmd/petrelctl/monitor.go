package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// dropEvent is one drop or trace as `petrelctl monitor` prints it.
type dropEvent struct {
	Time time.Time `json:"time"`
	// Type is drop or trace (a new connection allowed).
	Type   string `json:"type"`
	Reason string `json:"reason"`
	// EgressVerdict and IngressVerdict are how each direction was judged
	// here: allowed (by a policy), denied, not-isolated, node, or
	// not-judged (that pod is on another node).
	EgressVerdict       string `json:"egressVerdict"`
	IngressVerdict      string `json:"ingressVerdict"`
	Point               string `json:"point"`
	Protocol            string `json:"protocol"`
	Source              string `json:"source"`
	SourceAddress       string `json:"sourceAddress"`
	Destination         string `json:"destination"`
	DestinationAddress  string `json:"destinationAddress"`
	SourceIdentity      uint32 `json:"sourceIdentity"`
	DestinationIdentity uint32 `json:"destinationIdentity"`
}

// podNames resolves addresses to namespace/name through the API, listing
// again (at most once a second) when an address is new.
type podNames struct {
	cs    kubernetes.Interface
	mu    sync.Mutex
	byIP  map[netip.Addr]string
	since time.Time
}

func (p *podNames) name(a netip.Addr) string {
	if p.cs == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.byIP[a]; ok {
		return n
	}
	if time.Since(p.since) < time.Second {
		return ""
	}
	p.since = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := p.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	p.byIP = map[netip.Addr]string{}
	for _, pod := range list.Items {
		if pod.Spec.HostNetwork {
			continue
		}
		for _, ip := range pod.Status.PodIPs {
			if addr, err := netip.ParseAddr(ip.IP); err == nil {
				p.byIP[addr] = pod.Namespace + "/" + pod.Name
			}
		}
	}
	return p.byIP[a]
}

var dropReasons = map[uint8]string{bpfobj.DropIngress: "policy-denied-ingress", bpfobj.DropEgress: "policy-denied-egress",
	bpfobj.TraceAllowed: "policy-allowed"}
var verdictNames = map[uint8]string{bpfobj.PolicyVerdictAllowed: "allowed", bpfobj.PolicyVerdictDenied: "denied",
	bpfobj.PolicyVerdictUnisolated: "not-isolated", bpfobj.PolicyVerdictHost: "node", bpfobj.PolicyVerdictNone: "not-judged"}
var dropPoints = map[uint8]string{bpfobj.PointPod: "tc_pod", bpfobj.PointUplink: "tc_nodeport (from another host)",
	bpfobj.PointTunnel: "tc_tunnel (overlay)", bpfobj.PointNodePort: "tc_nodeport (NodePort to a local backend)"}

func protoName(p uint8) string {
	switch p {
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return strconv.Itoa(int(p))
}

func monitorCommand() *cobra.Command {
	var f mapFlags
	var typ, podFilter string
	cmd := &cobra.Command{Use: "monitor", Short: "Packets the node's BPF programs drop (and, with petrel node --trace, connections they allow), with pod names, as they happen",
		Long: "monitor reads the node's policy ring buffer (petrel_pol_events): one line (or JSON object) per dropped packet,\n" +
			"with both pods' namespace/name (from the API), addresses, ports, the reason and where it was judged. A node\n" +
			"started with --trace also reports each new connection NetworkPolicy allows (type trace, once per connection).\n" +
			"One reader at a time: a second monitor on the same node shares the events with the first.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if typ != "drop" && typ != "trace" && typ != "all" {
				return fmt.Errorf("--type must be drop, trace or all, not %q", typ)
			}
			if f.output != "table" && f.output != "json" {
				return fmt.Errorf("-o must be table or json, not %q", f.output)
			}
			dir := f.pinDir
			if dir == "" {
				dir = bpfobj.PinDir(f.node)
			}
			m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpfobj.MapPolicyEvents), nil)
			if err != nil {
				return fmt.Errorf("open the drop ring buffer under %s (is the node running, and is --node-name right?): %w", dir, err)
			}
			defer m.Close()
			rd, err := ringbuf.NewReader(m)
			if err != nil {
				return fmt.Errorf("read the drop ring buffer: %w", err)
			}
			defer rd.Close()
			names := &podNames{}
			if cfg, err := clientcmd.BuildConfigFromFlags("", defaultKubeconfig()); err == nil {
				names.cs, _ = kubernetes.NewForConfig(cfg)
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			go func() { <-sig; rd.Close() }()
			enc := json.NewEncoder(cmd.OutOrStdout())
			for {
				rec, err := rd.Read()
				if errors.Is(err, ringbuf.ErrClosed) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("read the drop ring buffer: %w", err)
				}
				ev, err := bpfobj.ParsePolicyEvent(rec.RawSample)
				if err != nil {
					continue
				}
				kind := "drop"
				if ev.Reason == bpfobj.TraceAllowed {
					kind = "trace"
				}
				if typ != "all" && typ != kind {
					continue
				}
				src, dst := bpfobj.AddrOf(ev.Saddr), bpfobj.AddrOf(ev.Daddr)
				d := dropEvent{Time: time.Now(), Type: kind, Reason: dropReasons[ev.Reason], Point: dropPoints[ev.Point],
					EgressVerdict: verdictNames[ev.VerdictEgress], IngressVerdict: verdictNames[ev.VerdictIngress],
					Protocol: protoName(ev.Proto), Source: names.name(src), Destination: names.name(dst),
					SourceAddress:      netip.AddrPortFrom(src, bpfobj.PortOf(ev.Sport)).String(),
					DestinationAddress: netip.AddrPortFrom(dst, bpfobj.PortOf(ev.Dport)).String(),
					SourceIdentity:     ev.SrcIdentity, DestinationIdentity: ev.DstIdentity}
				if podFilter != "" && d.Source != podFilter && d.Destination != podFilter {
					continue
				}
				if f.output == "json" {
					if err := enc.Encode(d); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s %s %s -> %s at %s (egress %s, ingress %s)\n", d.Time.Format("15:04:05.000"),
					strings.ToUpper(kind), d.Reason, d.Protocol, named(d.Source, d.SourceAddress), named(d.Destination, d.DestinationAddress),
					d.Point, d.EgressVerdict, d.IngressVerdict)
			}
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&typ, "type", "all", "events to show: drop, trace (allowed new connections; needs petrel node --trace) or all")
	cmd.Flags().StringVar(&podFilter, "pod", "", "only events of this pod (NAMESPACE/NAME), as source or destination")
	return cmd
}

func named(name, addr string) string {
	if name == "" {
		return addr
	}
	return strings.TrimSpace(name + " (" + addr + ")")
}
