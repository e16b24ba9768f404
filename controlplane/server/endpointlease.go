package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// The kubernetes Service's endpoints are the live servers, as Kubernetes'
// lease endpoint reconciler keeps them: each server holds a key under
// apiserverLeasePrefix on an etcd lease it keeps alive, and every
// EndpointReconcileInterval each server sets the endpoints to the addresses
// that have a key. A server that dies stops renewing; etcd drops its key
// after EndpointLeaseTTL and the next reconcile of a survivor drops its
// address.
const apiserverLeasePrefix = "/petrel/apiservers/"

// EndpointLeaseTTL is how long a dead server stays in the endpoints at most
// (plus one reconcile interval); Kubernetes uses 15 s and 10 s.
var (
	EndpointLeaseTTL          = 15 * time.Second
	EndpointReconcileInterval = 5 * time.Second
)

// keepEndpointLease runs until ctx ends: it keeps this server's lease key
// (address:port, so that servers sharing one address each hold one) and
// reconciles the endpoints with the live keys.
func keepEndpointLease(ctx context.Context, cli *clientv3.Client, cs kubernetes.Interface, address string, port int) {
	key := apiserverLeasePrefix + net.JoinHostPort(address, strconv.Itoa(port))
	var lease clientv3.LeaseID
	var alive <-chan *clientv3.LeaseKeepAliveResponse
	tick := time.NewTicker(EndpointReconcileInterval)
	defer tick.Stop()
	for {
		if alive == nil {
			l, ch, err := grantEndpointLease(ctx, cli, key, address)
			if err != nil {
				slog.Warn("kubernetes endpoints: lease", "key", key, "err", err)
			} else {
				lease, alive = l, ch
			}
		}
		if alive != nil {
			if err := reconcileEndpoints(ctx, cli, cs); err != nil && ctx.Err() == nil {
				slog.Warn("kubernetes endpoints: reconcile", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			// Leaving on purpose: the others drop this address at once.
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if lease != 0 {
				_, _ = cli.Revoke(rctx, lease)
			}
			cancel()
			return
		case _, ok := <-alive:
			if !ok { // the lease expired (etcd unreachable too long): take a new one
				alive = nil
			}
			continue
		case <-tick.C:
		}
	}
}

func grantEndpointLease(ctx context.Context, cli *clientv3.Client, key, address string) (clientv3.LeaseID, <-chan *clientv3.LeaseKeepAliveResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := cli.Grant(cctx, int64(EndpointLeaseTTL/time.Second))
	if err != nil {
		return 0, nil, err
	}
	if _, err := cli.Put(cctx, key, address, clientv3.WithLease(l.ID)); err != nil {
		return 0, nil, err
	}
	ch, err := cli.KeepAlive(ctx, l.ID)
	if err != nil {
		return 0, nil, err
	}
	return l.ID, ch, nil
}

// reconcileEndpoints sets the kubernetes endpoints to the live servers.
func reconcileEndpoints(ctx context.Context, cli *clientv3.Client, cs kubernetes.Interface) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.Get(cctx, apiserverLeasePrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("listing the servers' leases: %w", err)
	}
	var live []string
	for _, kv := range resp.Kvs {
		if a := string(kv.Value); !slices.Contains(live, a) {
			live = append(live, a)
		}
	}
	if len(live) == 0 {
		return nil // not even this server's: nothing to trust
	}
	return setEndpointAddresses(cctx, cs, live)
}

// setEndpointAddresses makes the kubernetes EndpointSlice and Endpoints
// list exactly addresses (their ports as publishEndpoints made them).
func setEndpointAddresses(ctx context.Context, cs kubernetes.Interface, addresses []string) error {
	slices.Sort(addresses)
	esClient := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		es, err := esClient.Get(ctx, "kubernetes", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil // publishEndpoints makes it at start
		}
		if err != nil {
			return err
		}
		var have []string
		for _, e := range es.Endpoints {
			have = append(have, e.Addresses...)
		}
		slices.Sort(have)
		if slices.Equal(have, addresses) {
			return nil
		}
		es.Endpoints = nil
		for _, a := range addresses {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
		}
		slog.Info("kubernetes endpoints: the live servers", "addresses", addresses, "were", have)
		_, err = esClient.Update(ctx, es, metav1.UpdateOptions{FieldManager: "petrel-apiserver"})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubernetes EndpointSlice: %w", err)
	}
	endpoints := cs.CoreV1().Endpoints(metav1.NamespaceDefault)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ep, err := endpoints.Get(ctx, "kubernetes", metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && len(ep.Subsets) == 0) {
			return nil
		}
		if err != nil {
			return err
		}
		var have []string
		for _, a := range ep.Subsets[0].Addresses {
			have = append(have, a.IP)
		}
		slices.Sort(have)
		if slices.Equal(have, addresses) {
			return nil
		}
		ep.Subsets[0].Addresses = nil
		for _, a := range addresses {
			ep.Subsets[0].Addresses = append(ep.Subsets[0].Addresses, corev1.EndpointAddress{IP: a})
		}
		_, err = endpoints.Update(ctx, ep, metav1.UpdateOptions{FieldManager: "petrel-apiserver"})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubernetes Endpoints: %w", err)
	}
	return nil
}
