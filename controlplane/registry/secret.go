package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/coreapi"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// secretResource is the strategy of secrets.
func secretResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("secrets"), Kind: "Secret", Namespaced: true,
		New: func() runtime.Object { return &corev1.Secret{} }, NewList: func() runtime.Object { return &corev1.SecretList{} },
		Default: func(obj runtime.Object) {
			s := obj.(*corev1.Secret)
			if s.Type == "" {
				s.Type = corev1.SecretTypeOpaque
			}
			// stringData is write-only: it is merged into data.
			for k, v := range s.StringData {
				if s.Data == nil {
					s.Data = map[string][]byte{}
				}
				s.Data[k] = []byte(v)
			}
			s.StringData = nil
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			s := obj.(*corev1.Secret)
			var errs field.ErrorList
			total := 0
			for k, v := range s.Data {
				errs = append(errs, coreapi.ValidateConfigKey(k, field.NewPath("data").Key(k))...)
				total += len(v)
			}
			if total > corev1.MaxSecretSize {
				errs = append(errs, field.TooLong(field.NewPath("data"), "", corev1.MaxSecretSize))
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			s, o := obj.(*corev1.Secret), old.(*corev1.Secret)
			var errs field.ErrorList
			if s.Type != o.Type {
				errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
			}
			if o.Immutable != nil && *o.Immutable {
				if !semanticEqual(s.Data, o.Data) {
					errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
				}
				// Once set, immutable stays set.
				if s.Immutable == nil || !*s.Immutable {
					errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
				}
			}
			return errs
		},
		Fields: func(obj runtime.Object) fields.Set { return fields.Set{"type": string(obj.(*corev1.Secret).Type)} },
		Columns: []Column{
			printers.Col("Type", "string", func(o runtime.Object) interface{} { return string(o.(*corev1.Secret).Type) }),
			printers.Col("Data", "string", func(o runtime.Object) interface{} { return int64(len(o.(*corev1.Secret).Data)) }),
			printers.AgeColumn,
		},
	}
}
