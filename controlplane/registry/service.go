package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/coreapi"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// serviceResource is the strategy of services.
func serviceResource(cfg Config) *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("services"), Kind: "Service", Namespaced: true, ShortNames: []string{"svc"}, Categories: []string{"all"},
		HasStatus: true, DNSLabelName: true, NameValidator: apivalidation.NameIsDNS1035Label,
		New: func() runtime.Object { return &corev1.Service{} }, NewList: func() runtime.Object { return &corev1.ServiceList{} },
		Default: func(obj runtime.Object) { coreapi.DefaultService(obj.(*corev1.Service)) },
		Validate: func(obj runtime.Object) field.ErrorList {
			return coreapi.ValidateService(obj.(*corev1.Service), serviceRanges(cfg))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			s, o := obj.(*corev1.Service), old.(*corev1.Service)
			errs := coreapi.ValidateService(s, serviceRanges(cfg))
			if o.Spec.ClusterIP != "" && o.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != o.Spec.ClusterIP {
				errs = append(errs, field.Invalid(field.NewPath("spec", "clusterIP"), s.Spec.ClusterIP, "field is immutable"))
			}
			return errs
		},
		Fields: func(obj runtime.Object) fields.Set {
			s := obj.(*corev1.Service)
			return fields.Set{"spec.clusterIP": s.Spec.ClusterIP, "spec.type": string(s.Spec.Type)}
		},
		Hooks:   cfg.ServiceHooks,
		Columns: printers.ServiceColumns(),
	}
}
