// Package loadbalancer gives LoadBalancer Services an address from the
// built-in pool (`petrel server --lb-pool`) in status.loadBalancer.ingress,
// and takes it back when a Service stops being a LoadBalancer or goes away.
// The node proxies then answer on that address. Services with a
// loadBalancerClass are left to whatever implements that class.
package loadbalancer

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// Range is an inclusive span of IPv4 addresses.
type Range struct{ First, Last netip.Addr }

// ParsePool reads "CIDR" or "FIRST-LAST" items, comma-separated. A CIDR's
// network and broadcast addresses are left out when it has room for both.
func ParsePool(s string) ([]Range, error) {
	var out []Range
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if first, last, ok := strings.Cut(item, "-"); ok {
			a, err1 := netip.ParseAddr(first)
			b, err2 := netip.ParseAddr(last)
			if err1 != nil || err2 != nil || !a.Is4() || !b.Is4() || b.Less(a) {
				return nil, fmt.Errorf("--lb-pool item %q is not FIRST-LAST of two IPv4 addresses in order", item)
			}
			out = append(out, Range{a, b})
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("--lb-pool item %q is neither an IPv4 CIDR nor FIRST-LAST", item)
		}
		p = p.Masked()
		first, last := p.Addr(), lastAddr(p)
		if p.Bits() <= 30 {
			first, last = first.Next(), last.Prev()
		}
		out = append(out, Range{first, last})
	}
	return out, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= (uint32(1) << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Controller assigns pool addresses.
type Controller struct {
	client   kubernetes.Interface
	pool     []Range
	services corelisters.ServiceLister
	loop     *loop.Loop

	mu   sync.Mutex
	used map[netip.Addr]string // address → namespace/name
}

// New builds the controller.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, pool []Range) *Controller {
	inf := factory.Core().V1().Services()
	c := &Controller{client: cs, pool: pool, services: inf.Lister(), used: map[netip.Addr]string{}}
	c.loop = loop.New("load balancer addresses", loop.Simple(c.sync))
	c.loop.Synced(inf.Informer().HasSynced)
	c.loop.Prepare(c.rebuild)
	_, _ = inf.Informer().AddEventHandler(c.loop.Handlers())
	return c
}

func managed(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass == nil
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.loop.Run(ctx, 1)
}

// rebuild reads the allocations back from the cluster.
func (c *Controller) rebuild() {
	svcs, _ := c.services.List(labels.Everything())
	c.mu.Lock()
	for _, s := range svcs {
		if managed(s) {
			for _, ing := range s.Status.LoadBalancer.Ingress {
				if a, err := netip.ParseAddr(ing.IP); err == nil && c.inPool(a) {
					c.used[a] = s.Namespace + "/" + s.Name
				}
			}
		}
	}
	c.mu.Unlock()
}

func (c *Controller) inPool(a netip.Addr) bool {
	for _, r := range c.pool {
		if !a.Less(r.First) && !r.Last.Less(a) {
			return true
		}
	}
	return false
}

func (c *Controller) releaseAll(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, owner := range c.used {
		if owner == key {
			delete(c.used, a)
		}
	}
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.releaseAll(key)
		return nil
	}
	if err != nil {
		return err
	}
	if !managed(svc) {
		c.mu.Lock()
		held := false
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(ing.IP); err == nil && c.used[a] == key {
				held = true
			}
		}
		c.mu.Unlock()
		if !held {
			return nil
		}
		upd := svc.DeepCopy()
		upd.Status.LoadBalancer = corev1.LoadBalancerStatus{}
		if _, err := c.client.CoreV1().Services(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("clear load balancer status: %w", err)
		}
		c.releaseAll(key)
		return nil
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			c.mu.Lock()
			owner, taken := c.used[a]
			if !taken && c.inPool(a) {
				c.used[a] = key
				owner = key
			}
			c.mu.Unlock()
			if owner == key || !c.inPool(a) {
				return nil // has its address
			}
		}
	}
	addr, err := c.allocate(key, svc.Spec.LoadBalancerIP)
	if err != nil {
		return err
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: addr.String(), IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
	if _, err := c.client.CoreV1().Services(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		c.mu.Lock()
		delete(c.used, addr)
		c.mu.Unlock()
		return fmt.Errorf("set load balancer address: %w", err)
	}
	slog.Info("load balancer address assigned", "service", key, "address", addr)
	return nil
}

// allocate hands out the requested address when it is free and in the
// pool, else the first free one.
func (c *Controller) allocate(key, requested string) (netip.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, err := netip.ParseAddr(requested); err == nil && c.inPool(a) {
		if owner, taken := c.used[a]; !taken || owner == key {
			c.used[a] = key
			return a, nil
		}
	}
	for _, r := range c.pool {
		for a := r.First; !r.Last.Less(a); a = a.Next() {
			if _, taken := c.used[a]; !taken {
				c.used[a] = key
				return a, nil
			}
		}
	}
	if len(c.pool) == 0 {
		return netip.Addr{}, fmt.Errorf("no --lb-pool is configured: LoadBalancer Services stay pending")
	}
	return netip.Addr{}, fmt.Errorf("the --lb-pool is exhausted: every address is assigned")
}
