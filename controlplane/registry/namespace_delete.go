package registry

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// undeletableNamespaces always exist.
var undeletableNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

func namespaceDeleteForbidden(name string) error {
	if undeletableNamespaces[name] {
		return errors.New("this namespace may not be deleted")
	}
	return nil
}

// terminateNamespace starts a namespace's termination: it stays, phase
// Terminating, while its spec.finalizers (the namespace controller's
// "kubernetes", which empties it) hold it.
func terminateNamespace(obj runtime.Object) bool {
	ns := obj.(*corev1.Namespace)
	ns.Status.Phase = corev1.NamespaceTerminating
	return len(ns.Spec.Finalizers) > 0
}

// FinalizeNamespace serves namespaces/<name>/finalize: it sets the
// namespace's spec.finalizers from ns, and the namespace goes once nothing
// holds it.
func FinalizeNamespace(ctx context.Context, namespaces *generic.Store, name string, ns *corev1.Namespace, dryRun bool) (runtime.Object, error) {
	return namespaces.GuaranteedUpdate(ctx, "", name, "finalize", dryRun, func(cur runtime.Object) (runtime.Object, error) {
		next := cur.(*corev1.Namespace).DeepCopy()
		next.Spec.Finalizers = ns.Spec.Finalizers
		if next.DeletionTimestamp != nil && len(next.Spec.Finalizers) == 0 && len(next.Finalizers) == 0 {
			return nil, nil
		}
		return next, nil
	})
}
