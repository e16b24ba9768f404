// Package sliceindex indexes an EndpointSlice informer by the Service each
// slice belongs to (its kubernetes.io/service-name label), so that a
// controller's sync of one Service reads that Service's slices without
// walking every slice of the namespace: with 10,000 Services in one namespace
// that walk, in the EndpointSlice and mirroring controllers, was three
// quarters of the API server's CPU during a bulk load.
package sliceindex

import (
	"fmt"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// byService names the index.
const byService = "petrel.io/service"

// Add puts the index on inf. Several controllers share one informer, so a
// second call does nothing. Call it before the informer starts.
func Add(inf cache.SharedIndexInformer) error {
	if _, ok := inf.GetIndexer().GetIndexers()[byService]; ok {
		return nil
	}
	if err := inf.AddIndexers(cache.Indexers{byService: serviceOf}); err != nil {
		return fmt.Errorf("indexing EndpointSlices by Service: %w", err)
	}
	return nil
}

// Indexers is the index, for an indexer made without an informer.
func Indexers() cache.Indexers { return cache.Indexers{byService: serviceOf} }

func serviceOf(obj interface{}) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// All returns every slice of Service namespace/name in indexer (the
// indexer of an informer given to Add).
func All(indexer cache.Indexer, namespace, name string) ([]*discoveryv1.EndpointSlice, error) {
	objs, err := indexer.ByIndex(byService, namespace+"/"+name)
	if err != nil {
		return nil, err
	}
	out := make([]*discoveryv1.EndpointSlice, len(objs))
	for i, o := range objs {
		out[i] = o.(*discoveryv1.EndpointSlice)
	}
	return out, nil
}

// ForService returns the slices of Service namespace/name that managedBy
// (the endpointslice.kubernetes.io/managed-by label) manages.
func ForService(inf cache.SharedIndexInformer, namespace, name, managedBy string) ([]*discoveryv1.EndpointSlice, error) {
	objs, err := inf.GetIndexer().ByIndex(byService, namespace+"/"+name)
	if err != nil {
		return nil, err
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s := o.(*discoveryv1.EndpointSlice); s.Labels[discoveryv1.LabelManagedBy] == managedBy {
			out = append(out, s)
		}
	}
	return out, nil
}
