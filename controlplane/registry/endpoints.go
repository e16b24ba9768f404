package registry

import (
	"fmt"
	"net"
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// endpointsResource is the strategy of endpoints.
func endpointsResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("endpoints"), Kind: "Endpoints", Namespaced: true, ShortNames: []string{"ep"},
		New: func() runtime.Object { return &corev1.Endpoints{} }, NewList: func() runtime.Object { return &corev1.EndpointsList{} },
		Default: func(obj runtime.Object) {
			ep := obj.(*corev1.Endpoints)
			for i := range ep.Subsets {
				for j := range ep.Subsets[i].Ports {
					if ep.Subsets[i].Ports[j].Protocol == "" {
						ep.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
					}
				}
			}
		},
		Columns: []Column{
			printers.Col("Endpoints", "string", func(o runtime.Object) interface{} { return endpointsString(o.(*corev1.Endpoints)) }),
			printers.AgeColumn,
		},
	}
}

func endpointsString(e *corev1.Endpoints) string {
	var parts []string
	for _, ss := range e.Subsets {
		for _, a := range ss.Addresses {
			if len(ss.Ports) == 0 {
				parts = append(parts, a.IP)
			}
			for _, p := range ss.Ports {
				parts = append(parts, net.JoinHostPort(a.IP, fmt.Sprint(p.Port)))
			}
		}
	}
	if len(parts) > 3 {
		return strings.Join(parts[:3], ",") + fmt.Sprintf(" + %d more...", len(parts)-3)
	}
	return printers.JoinOrNone(parts)
}
