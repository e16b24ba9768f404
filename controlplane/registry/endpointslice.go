package registry

import (
	"fmt"
	"net"
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// endpointSliceResource is the strategy of endpointslices.
func endpointSliceResource() *Resource {
	disc := discoveryv1.SchemeGroupVersion
	return &Resource{
		GVR: disc.WithResource("endpointslices"), Kind: "EndpointSlice", Namespaced: true,
		New: func() runtime.Object { return &discoveryv1.EndpointSlice{} }, NewList: func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Default: func(obj runtime.Object) {
			s := obj.(*discoveryv1.EndpointSlice)
			for i := range s.Ports {
				if s.Ports[i].Name == nil {
					s.Ports[i].Name = new(string)
				}
				if s.Ports[i].Protocol == nil || *s.Ports[i].Protocol == "" {
					tcp := corev1.ProtocolTCP
					s.Ports[i].Protocol = &tcp
				}
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			s := obj.(*discoveryv1.EndpointSlice)
			var errs field.ErrorList
			switch s.AddressType {
			case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
			default:
				errs = append(errs, field.NotSupported(field.NewPath("addressType"), s.AddressType, []string{"FQDN", "IPv4", "IPv6"}))
			}
			if len(s.Endpoints) > 1000 {
				errs = append(errs, field.TooMany(field.NewPath("endpoints"), len(s.Endpoints), 1000))
			}
			for i, ep := range s.Endpoints {
				if len(ep.Addresses) == 0 {
					errs = append(errs, field.Required(field.NewPath("endpoints").Index(i).Child("addresses"), ""))
				}
				for j, a := range ep.Addresses {
					if s.AddressType != discoveryv1.AddressTypeFQDN && net.ParseIP(a) == nil {
						errs = append(errs, field.Invalid(field.NewPath("endpoints").Index(i).Child("addresses").Index(j), a, "must be a valid IP address"))
					}
				}
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			if obj.(*discoveryv1.EndpointSlice).AddressType != old.(*discoveryv1.EndpointSlice).AddressType {
				return field.ErrorList{field.Invalid(field.NewPath("addressType"), obj.(*discoveryv1.EndpointSlice).AddressType, "field is immutable")}
			}
			return nil
		},
		Columns: []Column{
			printers.Col("AddressType", "string", func(o runtime.Object) interface{} { return string(o.(*discoveryv1.EndpointSlice).AddressType) }),
			printers.Col("Ports", "string", func(o runtime.Object) interface{} {
				var p []string
				for _, port := range o.(*discoveryv1.EndpointSlice).Ports {
					if port.Port != nil {
						p = append(p, fmt.Sprint(*port.Port))
					}
				}
				return printers.JoinOrNone(p)
			}),
			printers.Col("Endpoints", "string", func(o runtime.Object) interface{} {
				var a []string
				for _, ep := range o.(*discoveryv1.EndpointSlice).Endpoints {
					a = append(a, ep.Addresses...)
				}
				if len(a) > 3 {
					return strings.Join(a[:3], ",") + fmt.Sprintf(" + %d more...", len(a)-3)
				}
				return printers.JoinOrNone(a)
			}),
			printers.AgeColumn,
		},
	}
}
