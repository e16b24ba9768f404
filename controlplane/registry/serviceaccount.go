package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// serviceAccountResource is the strategy of serviceaccounts.
func serviceAccountResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("serviceaccounts"), Kind: "ServiceAccount", Namespaced: true, ShortNames: []string{"sa"},
		New: func() runtime.Object { return &corev1.ServiceAccount{} }, NewList: func() runtime.Object { return &corev1.ServiceAccountList{} },
		Columns: []Column{
			printers.Col("Secrets", "string", func(o runtime.Object) interface{} { return int64(len(o.(*corev1.ServiceAccount).Secrets)) }),
			printers.AgeColumn,
		},
	}
}
