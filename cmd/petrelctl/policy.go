package main

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/policy"
)

// policyPod is one pod's NetworkPolicy as the node's maps hold it.
type policyPod struct {
	Pod             string `json:"pod,omitempty"`
	Address         string `json:"address"`
	Identity        uint32 `json:"identity"`
	Labels          string `json:"labels,omitempty"`
	IngressIsolated bool   `json:"ingressIsolated"`
	EgressIsolated  bool   `json:"egressIsolated"`
	// Allows is what the pod's isolated directions let through; a
	// direction that is not isolated allows everything.
	Allows []policyAllow `json:"allows"`
}

// policyAllow is one thing an isolated pod allows.
type policyAllow struct {
	Direction    string `json:"direction"`
	PeerIdentity uint32 `json:"peerIdentity"`
	// Peer is the identity resolved: "any", "node", "world", "cidr PREFIX"
	// or a pod identity's namespace and labels.
	Peer     string `json:"peer"`
	Protocol string `json:"protocol"`
	Ports    string `json:"ports"`
}

// policyNames resolves identities and addresses through the API: the pod
// identities are computed from the pods and namespaces as the node does
// (they are hashes of namespace and labels, the same on every node).
type policyNames struct {
	labels map[uint32]string
	pods   map[netip.Addr]string
	byName map[string]netip.Addr
}

func loadPolicyNames(ctx context.Context) *policyNames {
	n := &policyNames{labels: map[uint32]string{}, pods: map[netip.Addr]string{}, byName: map[string]netip.Addr{}}
	cfg, err := clientcmd.BuildConfigFromFlags("", defaultKubeconfig())
	if err != nil {
		return n
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return n
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return n
	}
	in := policy.Input{}
	for i := range pods.Items {
		p := &pods.Items[i]
		in.Pods = append(in.Pods, p)
		if p.Spec.HostNetwork {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				n.pods[a] = p.Namespace + "/" + p.Name
				n.byName[p.Namespace+"/"+p.Name] = a
			}
		}
	}
	n.labels = policy.Compute(in).Labels
	return n
}

func policyListCommand(f *mapFlags) *cobra.Command {
	return &cobra.Command{Use: "list [NAMESPACE/NAME | ADDRESS]",
		Short: "What each isolated pod of the node allows (or one pod's), peers' identities resolved to namespace and labels",
		Long: "policy list reads the node's NetworkPolicy maps: which local pods a policy isolates (petrel_pol_ep), and for each\n" +
			"isolated direction the peers, protocols and ports it allows (petrel_policy), with peer identities resolved to\n" +
			"namespace and labels through the API (petrel_pol_cidr for ipBlock prefixes). A pod that is not listed is isolated\n" +
			"by no policy and allows everything.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.output != "table" && f.output != "json" {
				return fmt.Errorf("-o must be table or json, not %q", f.output)
			}
			dir := f.pinDir
			if dir == "" {
				dir = bpfobj.PinDir(f.node)
			}
			maps, err := bpfobj.OpenPolicyMaps(dir, true)
			if err != nil {
				return err
			}
			defer maps.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			names := loadPolicyNames(ctx)
			rows, err := policyRows(maps, names)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				addr, err := netip.ParseAddr(args[0])
				if err != nil {
					var ok bool
					if addr, ok = names.byName[args[0]]; !ok {
						return fmt.Errorf("%s: no such pod address (give NAMESPACE/NAME of a pod with an address, or an address)", args[0])
					}
				}
				var one []policyPod
				for _, r := range rows {
					if r.Address == addr.String() {
						one = append(one, r)
					}
				}
				if one == nil {
					one = []policyPod{{Pod: names.pods[addr], Address: addr.String(), Allows: []policyAllow{}}}
				}
				rows = one
			}
			return f.print(cmd.OutOrStdout(), rows, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "POD\tADDRESS\tISOLATED\tDIRECTION\tPEER\tPROTOCOL\tPORTS")
				for _, r := range rows {
					iso := isolation(r)
					name := r.Pod
					if name == "" {
						name = "-"
					}
					if len(r.Allows) == 0 {
						what := "(nothing allowed)"
						if iso == "none" {
							what = "(no policy: everything allowed)"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t-\t%s\t-\t-\n", name, r.Address, iso, what)
					}
					for i, a := range r.Allows {
						if i > 0 {
							name, iso = "", ""
						}
						addr := r.Address
						if i > 0 {
							addr = ""
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, addr, iso, a.Direction, a.Peer, a.Protocol, a.Ports)
					}
				}
			})
		}}
}

func isolation(r policyPod) string {
	switch {
	case r.IngressIsolated && r.EgressIsolated:
		return "ingress,egress"
	case r.IngressIsolated:
		return "ingress"
	case r.EgressIsolated:
		return "egress"
	}
	return "none"
}

// policyRows reads the isolated pods and their entries, sorted by pod and
// with adjacent port blocks of one peer merged into ranges.
func policyRows(maps *bpfobj.PolicyMaps, names *policyNames) ([]policyPod, error) {
	cidrs := map[uint32]netip.Prefix{}
	var ck bpfobj.IPCacheKey
	var cv bpfobj.IPCacheValue
	it := maps.CIDR.Iterate()
	for it.Next(&ck, &cv) {
		cidrs[cv.Identity] = bpfobj.PrefixOf(ck)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", bpfobj.MapPolicyCIDR, err)
	}
	pods := map[netip.Addr]*policyPod{}
	var addr uint32
	var ep bpfobj.PolicyEndpoint
	it = maps.Endpoints.Iterate()
	for it.Next(&addr, &ep) {
		a := bpfobj.AddrOf(addr)
		pods[a] = &policyPod{Pod: names.pods[a], Address: a.String(), Identity: ep.Identity, Labels: names.labels[ep.Identity],
			IngressIsolated: ep.Flags&bpfobj.EndpointIngressIsolated != 0, EgressIsolated: ep.Flags&bpfobj.EndpointEgressIsolated != 0,
			Allows: []policyAllow{}}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", bpfobj.MapPolicyEndpoints, err)
	}
	var entries []policy.Entry
	var pk bpfobj.PolicyKey
	var pv bpfobj.PolicyValue
	it = maps.Policy.Iterate()
	for it.Next(&pk, &pv) {
		entries = append(entries, policy.EntryOf(pk))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", bpfobj.MapPolicy, err)
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.Pod != b.Pod {
			return a.Pod.Less(b.Pod)
		}
		if a.Dir != b.Dir {
			return a.Dir < b.Dir
		}
		if a.Identity != b.Identity {
			return a.Identity < b.Identity
		}
		if a.PortBits != b.PortBits && (a.PortBits == policy.AnyProtocol || b.PortBits == policy.AnyProtocol) {
			return a.PortBits == policy.AnyProtocol
		}
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		return a.Port < b.Port
	})
	type run struct {
		e          policy.Entry
		first, end uint32 // ports [first, end]
	}
	var runs []run
	for _, e := range entries {
		first, end := uint32(e.Port), uint32(e.Port)
		if e.PortBits >= 0 && e.PortBits < policy.ExactPort {
			end = first + 1<<(16-e.PortBits) - 1
		}
		if n := len(runs); n > 0 {
			last := &runs[n-1]
			if last.e.Pod == e.Pod && last.e.Dir == e.Dir && last.e.Identity == e.Identity && last.e.Proto == e.Proto &&
				last.e.PortBits > 0 && e.PortBits > 0 && last.end+1 == first {
				last.end = end
				continue
			}
		}
		runs = append(runs, run{e: e, first: first, end: end})
	}
	for _, r := range runs {
		p := pods[r.e.Pod]
		if p == nil {
			// An entry of a pod no longer isolated (the writer removes
			// those last): shown, so nothing is hidden.
			p = &policyPod{Pod: names.pods[r.e.Pod], Address: r.e.Pod.String(), Allows: []policyAllow{}}
			pods[r.e.Pod] = p
		}
		a := policyAllow{Direction: "ingress", PeerIdentity: r.e.Identity, Peer: peerName(r.e.Identity, cidrs, names),
			Protocol: "any", Ports: "any"}
		if r.e.Dir == bpfobj.DirEgress {
			a.Direction = "egress"
		}
		if r.e.PortBits != policy.AnyProtocol {
			a.Protocol = protoName(r.e.Proto)
			switch {
			case r.e.PortBits == policy.AnyPort:
			case r.first == r.end:
				a.Ports = fmt.Sprint(r.first)
			default:
				a.Ports = fmt.Sprintf("%d-%d", r.first, r.end)
			}
		}
		p.Allows = append(p.Allows, a)
	}
	out := make([]policyPod, 0, len(pods))
	for _, p := range pods {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pod != out[j].Pod {
			return out[i].Pod < out[j].Pod
		}
		return out[i].Address < out[j].Address
	})
	return out, nil
}

// peerName says who an identity is.
func peerName(id uint32, cidrs map[uint32]netip.Prefix, names *policyNames) string {
	switch {
	case id == bpfobj.IdentityAny:
		return "any"
	case id == bpfobj.IdentityHost:
		return "node"
	case id == bpfobj.IdentityWorld:
		return "world"
	case id >= policy.FirstCIDRIdentity:
		if p, ok := cidrs[id]; ok {
			return "cidr " + p.String()
		}
		return fmt.Sprintf("cidr identity %d", id)
	}
	if l, ok := names.labels[id]; ok {
		// "ns k=v k=v" → "ns=NS k=v ..."
		ns, rest, _ := strings.Cut(l, " ")
		return strings.TrimSpace(fmt.Sprintf("identity %d: namespace=%s %s", id, ns, rest))
	}
	return fmt.Sprintf("identity %d", id)
}
