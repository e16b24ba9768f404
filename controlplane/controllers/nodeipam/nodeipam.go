// Package nodeipam gives every Node a pod CIDR (a /24 by default) from the
// cluster CIDR, once, in spec.podCIDR and spec.podCIDRs. Allocations are
// read back from the Nodes themselves, so a restart never hands one out twice.
package nodeipam

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// Controller assigns pod CIDRs to Nodes.
type Controller struct {
	client  kubernetes.Interface
	cluster netip.Prefix
	bits    int
	nodes   corelisters.NodeLister
	loop    *loop.Loop

	mu   sync.Mutex
	used map[netip.Prefix]string // prefix → node
}

// New builds the controller for clusterCIDR, handing out prefixes of
// nodeBits (24: a /24 per node).
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, clusterCIDR string, nodeBits int) (*Controller, error) {
	cluster, err := netip.ParsePrefix(clusterCIDR)
	if err != nil || !cluster.Addr().Is4() || nodeBits < cluster.Bits() || nodeBits > 30 {
		return nil, fmt.Errorf("cluster CIDR %q cannot hold /%d node ranges", clusterCIDR, nodeBits)
	}
	inf := factory.Core().V1().Nodes()
	c := &Controller{client: cs, cluster: cluster.Masked(), bits: nodeBits, nodes: inf.Lister(), used: map[netip.Prefix]string{}}
	c.loop = loop.New("node IPAM", loop.Simple(c.sync))
	c.loop.Synced(inf.Informer().HasSynced)
	c.loop.Prepare(c.rebuild)
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { c.loop.Add(obj.(*corev1.Node).Name) },
		UpdateFunc: func(_, obj interface{}) { c.loop.Add(obj.(*corev1.Node).Name) },
		DeleteFunc: func(obj interface{}) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				c.release(n)
			}
		},
	})
	return c, nil
}

func (c *Controller) release(n *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil && c.used[p] == n.Name {
		delete(c.used, p)
	}
}

// Run assigns until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.loop.Run(ctx, 1)
}

// rebuild reads the allocations back from the cluster.
func (c *Controller) rebuild() {
	nodes, _ := c.nodes.List(labels.Everything())
	c.mu.Lock()
	for _, n := range nodes {
		if p, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil {
			c.used[p] = n.Name
		}
	}
	c.mu.Unlock()
}

func (c *Controller) sync(ctx context.Context, name string) error {
	n, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if n.Spec.PodCIDR != "" {
		return nil
	}
	prefix, err := c.allocate(name)
	if err != nil {
		return err
	}
	// A patch, as Kubernetes' IPAM sends: the node writes its status at the
	// same time, and an update from a stale cache would only conflict. A
	// podCIDR once set cannot change, so a racing second patch is refused.
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, prefix, prefix)
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "petrel-node-ipam"}); err != nil {
		c.mu.Lock()
		delete(c.used, prefix)
		c.mu.Unlock()
		return fmt.Errorf("set podCIDR: %w", err)
	}
	slog.Info("node IPAM: assigned", "node", name, "podCIDR", prefix)
	return nil
}

func (c *Controller) allocate(node string) (netip.Prefix, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	step := uint32(1) << (32 - c.bits)
	count := uint32(1) << (c.bits - c.cluster.Bits())
	base := c.cluster.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := range count {
		v := start + i*step
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), c.bits)
		if _, taken := c.used[p]; !taken {
			c.used[p] = node
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("cluster CIDR %s is full: all %d node ranges are assigned", c.cluster, count)
}
