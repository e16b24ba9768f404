package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
)

// namespaceResource is the strategy of namespaces.
func namespaceResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("namespaces"), Kind: "Namespace", ShortNames: []string{"ns"}, HasStatus: true,
		DNSLabelName: true, DeleteForbidden: namespaceDeleteForbidden, Terminate: terminateNamespace,
		New: func() runtime.Object { return &corev1.Namespace{} }, NewList: func() runtime.Object { return &corev1.NamespaceList{} },
		Default: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			if ns.Status.Phase == "" {
				ns.Status.Phase = corev1.NamespaceActive
			}
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels[corev1.LabelMetadataName] = ns.Name
		},
		PrepareForCreate: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			ns.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
		},
		Columns: []Column{
			printers.Col("Status", "string", func(o runtime.Object) interface{} { return string(o.(*corev1.Namespace).Status.Phase) }),
			printers.AgeColumn,
		},
	}
}
