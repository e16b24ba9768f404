package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/coreapi"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// configMapResource is the strategy of configmaps.
func configMapResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("configmaps"), Kind: "ConfigMap", Namespaced: true, ShortNames: []string{"cm"},
		New: func() runtime.Object { return &corev1.ConfigMap{} }, NewList: func() runtime.Object { return &corev1.ConfigMapList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			cm := obj.(*corev1.ConfigMap)
			var errs field.ErrorList
			for k := range cm.Data {
				errs = append(errs, coreapi.ValidateConfigKey(k, field.NewPath("data").Key(k))...)
				if _, dup := cm.BinaryData[k]; dup {
					errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, "duplicate of key present in binaryData"))
				}
			}
			for k := range cm.BinaryData {
				errs = append(errs, coreapi.ValidateConfigKey(k, field.NewPath("binaryData").Key(k))...)
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cm, o := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
			if o.Immutable != nil && *o.Immutable && (!semanticEqual(cm.Data, o.Data) || !semanticEqual(cm.BinaryData, o.BinaryData) || !semanticEqual(cm.Immutable, o.Immutable)) {
				return field.ErrorList{field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set")}
			}
			return nil
		},
		Columns: []Column{
			printers.Col("Data", "integer", func(o runtime.Object) interface{} {
				cm := o.(*corev1.ConfigMap)
				return int64(len(cm.Data) + len(cm.BinaryData))
			}),
			printers.AgeColumn,
		},
	}
}
