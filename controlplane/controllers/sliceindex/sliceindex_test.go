package sliceindex

import (
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func slice(ns, name, svc, managedBy string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: managedBy}}}
}

func TestForServiceFindsOnlyItsSlices(t *testing.T) {
	inf := informers.NewSharedInformerFactory(fake.NewClientset(), 0).Discovery().V1().EndpointSlices().Informer()
	for i := 0; i < 2; i++ { // two controllers share the informer
		if err := Add(inf); err != nil {
			t.Fatalf("Add #%d: %v", i+1, err)
		}
	}
	for _, s := range []*discoveryv1.EndpointSlice{
		slice("a", "web-1", "web", "me"), slice("a", "web-2", "web", "me"), slice("a", "web-m", "web", "other"),
		slice("a", "db-1", "db", "me"), slice("b", "web-1", "web", "me"),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "loose"}},
	} {
		if err := inf.GetIndexer().Add(s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ForService(inf, "a", "web", "me")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range got {
		names[s.Namespace+"/"+s.Name] = true
	}
	if len(names) != 2 || !names["a/web-1"] || !names["a/web-2"] {
		t.Fatalf("slices of a/web managed by me: %v", names)
	}
	all, err := All(inf.GetIndexer(), "a", "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("All(a/web): %d slices, want its 3 of either manager", len(all))
	}
}
