package builtin

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// isDefaultClassAnnotation marks the default StorageClass.
const isDefaultClassAnnotation = "storageclass.kubernetes.io/is-default-class"

// DefaultStorageClass gives a new claim that names no StorageClass the
// class marked default (storageclass.kubernetes.io/is-default-class), as
// Kubernetes' plugin of that name: the newest when several are marked. A
// claim with storageClassName "" asks for no class and keeps it.
type DefaultStorageClass struct {
	reg *generic.Registry
}

// Name names the plugin.
func (p *DefaultStorageClass) Name() string { return "DefaultStorageClass" }

// Handles creates.
func (p *DefaultStorageClass) Handles(op admission.Operation) bool { return op == admission.Create }

// Admit sets the class.
func (p *DefaultStorageClass) Admit(ctx context.Context, a *admission.Attributes) error {
	pvc, ok := a.Object.(*corev1.PersistentVolumeClaim)
	if !ok || a.Subresource != "" || pvc.Spec.StorageClassName != nil || p.reg == nil {
		return nil
	}
	st := p.reg.Store(storagev1.SchemeGroupVersion.WithResource("storageclasses"))
	if st == nil {
		return nil
	}
	classes, err := st.CachedList(ctx, "")
	if err != nil {
		return fmt.Errorf("listing StorageClasses: %w", err)
	}
	var best *storagev1.StorageClass
	for _, o := range classes {
		sc, ok := o.(*storagev1.StorageClass)
		if !ok || sc.Annotations[isDefaultClassAnnotation] != "true" {
			continue
		}
		if best == nil || sc.CreationTimestamp.After(best.CreationTimestamp.Time) ||
			(sc.CreationTimestamp.Equal(&best.CreationTimestamp) && sc.Name < best.Name) {
			best = sc
		}
	}
	if best != nil {
		name := best.Name
		pvc.Spec.StorageClassName = &name
	}
	return nil
}
