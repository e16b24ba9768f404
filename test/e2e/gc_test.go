package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestGarbageCollectorForeground is foreground deletion as Kubernetes'
// collector does it: a dependent that has another owner that stays loses
// only its reference to the owner being deleted and lives on, the others
// go, and the owner goes once none blocks it; a circle of owners deleted in
// the foreground unwinds instead of waiting for ever.
func TestGarbageCollectorForeground(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "default"
	cms := cs.CoreV1().ConfigMaps(ns)
	create := func(name string, owners ...*corev1.ConfigMap) *corev1.ConfigMap {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}
		for _, o := range owners {
			cm.OwnerReferences = append(cm.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: o.Name, UID: o.UID, BlockOwnerDeletion: ptr.To(true)})
		}
		got, err := cms.Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	gone := func(names ...string) func() error {
		return func() error {
			for _, n := range names {
				if _, err := cms.Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("%s still there (%v)", n, err)
				}
			}
			return nil
		}
	}
	fg := metav1.DeletePropagationForeground

	t.Run("a dependent with another owner that stays lives on", func(t *testing.T) {
		going, staying := create("owner-going"), create("owner-staying")
		create("dep-both", going, staying)
		create("dep-one", going)
		if err := cms.Delete(ctx, "owner-going", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
			t.Fatal(err)
		}
		poll(t, "the owner and its only dependent gone", 30*time.Second, gone("owner-going", "dep-one"))
		dep, err := cms.Get(ctx, "dep-both", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("a dependent with another owner was deleted: %v", err)
		}
		if len(dep.OwnerReferences) != 1 || dep.OwnerReferences[0].UID != staying.UID {
			t.Fatalf("dep-both owners %+v, want only owner-staying", dep.OwnerReferences)
		}
	})

	t.Run("a circle of owners unwinds", func(t *testing.T) {
		a := create("circle-a")
		b := create("circle-b", a)
		c := create("circle-c", b)
		a.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: c.Name, UID: c.UID, BlockOwnerDeletion: ptr.To(true)}}
		if _, err := cms.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, "circle-a", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
			t.Fatal(err)
		}
		poll(t, "the whole circle gone", 60*time.Second, gone("circle-a", "circle-b", "circle-c"))
	})
}
