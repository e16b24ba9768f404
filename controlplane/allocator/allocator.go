// Package allocator hands out Service ClusterIPs and NodePorts. Each allocation
// is its own etcd key, created with a compare-and-swap, so an address or port is
// never given twice — across restarts and across API servers sharing one etcd.
// A repair pass frees allocations whose Service is gone.
package allocator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

const (
	ipPrefix   = "/registry/petrel.io/serviceips/"
	portPrefix = "/registry/petrel.io/servicenodeports/"
)

// ServiceAllocator implements the registry's hooks for Services.
type ServiceAllocator struct {
	client  *clientv3.Client
	cidr    *net.IPNet
	base    uint32
	size    uint32
	portMin int
	portMax int
}

// New returns an allocator for the service CIDR (IPv4) and NodePort range.
func New(client *clientv3.Client, cidr *net.IPNet, portMin, portMax int) (*ServiceAllocator, error) {
	ip4 := cidr.IP.To4()
	if ip4 == nil {
		return nil, fmt.Errorf("service CIDR %s: only IPv4 is supported", cidr)
	}
	ones, bits := cidr.Mask.Size()
	size := uint32(1) << uint(bits-ones)
	if size < 4 {
		return nil, fmt.Errorf("service CIDR %s is too small", cidr)
	}
	return &ServiceAllocator{client: client, cidr: cidr, base: binary.BigEndian.Uint32(ip4), size: size, portMin: portMin, portMax: portMax}, nil
}

func owner(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

// reserve creates key for owner unless somebody else holds it.
func (a *ServiceAllocator) reserve(ctx context.Context, key, who string) (bool, error) {
	resp, err := a.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, who)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return false, fmt.Errorf("reserving %s: %w", key, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	return len(kvs) > 0 && string(kvs[0].Value) == who, nil
}

func (a *ServiceAllocator) release(ctx context.Context, key, who string) {
	_, err := a.client.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", who)).Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		slog.Warn("releasing allocation failed; the repair pass will free it", "key", key, "err", err)
	}
}

func (a *ServiceAllocator) ipAt(off uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, a.base+off)
	return ip
}

// claim reserves one of n slots for who and returns its index: a few random
// probes first (the ranges are sparse in practice), then one read of what is
// taken and a try of each free slot, so a nearly full range costs one range
// read, not one transaction per taken slot.
func (a *ServiceAllocator) claim(ctx context.Context, who, prefix string, n int, keyAt func(i int) string) (int, bool, error) {
	for try := 0; try < 64; try++ {
		i := rand.IntN(n)
		ok, err := a.reserve(ctx, keyAt(i), who)
		if err != nil || ok {
			return i, ok, err
		}
	}
	resp, err := a.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, false, fmt.Errorf("listing allocations: %w", err)
	}
	taken := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		taken[string(kv.Key)] = true
	}
	for i := 0; i < n; i++ {
		if taken[keyAt(i)] {
			continue
		}
		ok, err := a.reserve(ctx, keyAt(i), who)
		if err != nil || ok {
			return i, ok, err
		}
	}
	return 0, false, nil
}

// allocateIP reserves a free ClusterIP (neither the network nor the broadcast address).
func (a *ServiceAllocator) allocateIP(ctx context.Context, who string) (string, error) {
	ipOf := func(i int) string { return a.ipAt(uint32(i) + 1).String() }
	i, ok, err := a.claim(ctx, who, ipPrefix, int(a.size-2), func(i int) string { return ipPrefix + ipOf(i) })
	if err != nil {
		return "", err
	}
	if !ok {
		return "", apierrors.NewInternalError(errors.New("no ClusterIP is free in " + a.cidr.String()))
	}
	return ipOf(i), nil
}

// allocatePort reserves a free NodePort.
func (a *ServiceAllocator) allocatePort(ctx context.Context, who string) (int32, error) {
	i, ok, err := a.claim(ctx, who, portPrefix, a.portMax-a.portMin+1, func(i int) string { return portPrefix + strconv.Itoa(a.portMin+i) })
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, apierrors.NewInternalError(fmt.Errorf("no NodePort is free in %d-%d", a.portMin, a.portMax))
	}
	return int32(a.portMin + i), nil
}

func invalid(svc *corev1.Service, errs field.ErrorList) error {
	return apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, svc.Name, errs)
}

// BeforeCreate allocates the Service's ClusterIP and NodePorts.
func (a *ServiceAllocator) BeforeCreate(ctx context.Context, obj runtime.Object, dryRun bool) (func(), error) {
	return a.allocate(ctx, obj.(*corev1.Service), nil, dryRun)
}

// BeforeUpdate allocates what a changed Service newly needs (a type change to
// NodePort, new ports).
func (a *ServiceAllocator) BeforeUpdate(ctx context.Context, obj, old runtime.Object, dryRun bool) (func(), error) {
	svc, prev := obj.(*corev1.Service), old.(*corev1.Service)
	if svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP == "" && prev.Spec.ClusterIP != "" && prev.Spec.Type != corev1.ServiceTypeExternalName {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = prev.Spec.ClusterIP, prev.Spec.ClusterIPs
	}
	if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		// Ports the update kept keep their NodePort.
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if p.NodePort != 0 {
				continue
			}
			for _, q := range prev.Spec.Ports {
				if q.NodePort != 0 && q.Port == p.Port && q.Protocol == p.Protocol {
					p.NodePort = q.NodePort
				}
			}
		}
	} else {
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
	}
	return a.allocate(ctx, svc, prev, dryRun)
}

func (a *ServiceAllocator) allocate(ctx context.Context, svc, prev *corev1.Service, dryRun bool) (func(), error) {
	who := owner(svc)
	var taken []string
	undo := func() {
		for _, k := range taken {
			a.release(context.WithoutCancel(ctx), k, who)
		}
	}
	fail := func(err error) (func(), error) {
		undo()
		return nil, err
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
		return undo, nil
	}
	had := func(key string) bool {
		if prev == nil {
			return false
		}
		if strings.HasPrefix(key, ipPrefix) {
			return ipPrefix+prev.Spec.ClusterIP == key
		}
		for _, p := range prev.Spec.Ports {
			if portPrefix+strconv.Itoa(int(p.NodePort)) == key {
				return true
			}
		}
		return false
	}
	take := func(key string) (bool, error) {
		if dryRun {
			resp, err := a.client.Get(ctx, key)
			if err != nil {
				return false, err
			}
			return len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) == who, nil
		}
		ok, err := a.reserve(ctx, key, who)
		if ok && !had(key) {
			taken = append(taken, key)
		}
		return ok, err
	}
	switch svc.Spec.ClusterIP {
	case corev1.ClusterIPNone:
		svc.Spec.ClusterIPs = []string{corev1.ClusterIPNone}
	case "":
		if dryRun {
			break
		}
		ip, err := a.allocateIP(ctx, who)
		if err != nil {
			return fail(err)
		}
		taken = append(taken, ipPrefix+ip)
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = ip, []string{ip}
	default:
		ok, err := take(ipPrefix + svc.Spec.ClusterIP)
		if err != nil {
			return fail(err)
		}
		if !ok {
			return fail(invalid(svc, field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), svc.Spec.ClusterIP,
				fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", svc.Spec.ClusterIP))}))
		}
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	}
	needPorts := svc.Spec.Type == corev1.ServiceTypeNodePort ||
		(svc.Spec.Type == corev1.ServiceTypeLoadBalancer && (svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts))
	if !needPorts {
		return undo, nil
	}
	// The same NodePort may serve one port number over TCP and UDP of one Service.
	byPort := map[int32]int32{}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.NodePort != 0 {
			ok, err := take(portPrefix + strconv.Itoa(int(p.NodePort)))
			if err != nil {
				return fail(err)
			}
			if !ok {
				return fail(invalid(svc, field.ErrorList{field.Invalid(field.NewPath("spec", "ports").Index(i).Child("nodePort"), p.NodePort, "provided port is already allocated")}))
			}
			continue
		}
		if np, ok := byPort[p.Port]; ok {
			p.NodePort = np
			continue
		}
		if dryRun {
			continue
		}
		np, err := a.allocatePort(ctx, who)
		if err != nil {
			return fail(err)
		}
		taken = append(taken, portPrefix+strconv.Itoa(int(np)))
		p.NodePort = np
		byPort[p.Port] = np
	}
	return undo, nil
}

// AfterDelete frees what the deleted Service held.
func (a *ServiceAllocator) AfterDelete(ctx context.Context, obj runtime.Object) {
	svc := obj.(*corev1.Service)
	ctx = context.WithoutCancel(ctx)
	who := owner(svc)
	if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		a.release(ctx, ipPrefix+svc.Spec.ClusterIP, who)
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			a.release(ctx, portPrefix+strconv.Itoa(int(p.NodePort)), who)
		}
	}
}

// Repair frees allocations that no Service holds any more (after a crash between
// allocation and create, or a type change). services is a list read before
// the allocations; lookup reads one Service fresh, so that an allocation made
// by another API server for a Service it is creating right now is kept.
func (a *ServiceAllocator) Repair(ctx context.Context, services []*corev1.Service, lookup func(ctx context.Context, namespace, name string) (*corev1.Service, error)) error {
	held := map[string]string{}
	for _, s := range services {
		if s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
			held[ipPrefix+s.Spec.ClusterIP] = owner(s)
		}
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				held[portPrefix+strconv.Itoa(int(p.NodePort))] = owner(s)
			}
		}
	}
	type candidate struct {
		key, who string
		rev      int64
	}
	var candidates []candidate
	for _, prefix := range []string{ipPrefix, portPrefix} {
		resp, err := a.client.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("listing allocations: %w", err)
		}
		for _, kv := range resp.Kvs {
			if held[string(kv.Key)] != string(kv.Value) {
				candidates = append(candidates, candidate{string(kv.Key), string(kv.Value), kv.ModRevision})
			}
		}
	}
	if len(candidates) > 0 && lookup != nil {
		// A Service being created by another server gets its allocation first
		// and is stored a moment later: look again after that moment.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	for _, c := range candidates {
		if holdsFresh(ctx, lookup, c.key, c.who) {
			continue
		}
		// Only free what has not changed since we looked.
		_, err := a.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(c.key), "=", c.rev)).Then(clientv3.OpDelete(c.key)).Commit()
		if err != nil {
			return fmt.Errorf("freeing %s: %w", c.key, err)
		}
		slog.Info("freed leaked service allocation", "key", c.key, "owner", c.who)
	}
	return nil
}

// holdsFresh reports whether the owner Service, read now, holds the allocation.
func holdsFresh(ctx context.Context, lookup func(ctx context.Context, namespace, name string) (*corev1.Service, error), key, who string) bool {
	if lookup == nil {
		return false
	}
	ns, name, ok := strings.Cut(who, "/")
	if !ok {
		return false
	}
	svc, err := lookup(ctx, ns, name)
	if err != nil || svc == nil {
		return false
	}
	if strings.HasPrefix(key, ipPrefix) {
		return ipPrefix+svc.Spec.ClusterIP == key
	}
	for _, p := range svc.Spec.Ports {
		if portPrefix+strconv.Itoa(int(p.NodePort)) == key {
			return true
		}
	}
	return false
}
