package registry

import (
	"fmt"
	"net"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Config carries the cluster settings that defaulting and validation need.
type Config struct {
	ServiceCIDR  *net.IPNet
	NodePortMin  int
	NodePortMax  int
	ServiceHooks Hooks
}

// All returns every served resource.
func All(cfg Config) []*Resource {
	var out []*Resource
	out = append(out, coreResources(cfg)...)
	out = append(out, workloadResources()...)
	out = append(out, otherResources()...)
	out = append(out, rbacResources()...)
	out = append(out, policyResources()...)
	out = append(out, certificateResources()...)
	out = append(out, limitRangeResource(), resourceQuotaResource())
	for _, r := range out {
		if r.Singular == "" {
			r.Singular = strings.ToLower(r.Kind)
		}
		if !hasAge(r.Columns) {
			r.Columns = append(r.Columns, AgeColumn)
		}
	}
	return out
}

func hasAge(cols []Column) bool {
	for _, c := range cols {
		if c.Name == "Age" || c.Name == createdAtColumn.Name {
			return true
		}
	}
	return false
}

func otherResources() []*Resource {
	disc := discoveryv1.SchemeGroupVersion
	net1 := networkingv1.SchemeGroupVersion
	return []*Resource{
		{
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
				col("AddressType", "string", func(o runtime.Object) interface{} { return string(o.(*discoveryv1.EndpointSlice).AddressType) }),
				col("Ports", "string", func(o runtime.Object) interface{} {
					var p []string
					for _, port := range o.(*discoveryv1.EndpointSlice).Ports {
						if port.Port != nil {
							p = append(p, fmt.Sprint(*port.Port))
						}
					}
					return joinOrNone(p)
				}),
				col("Endpoints", "string", func(o runtime.Object) interface{} {
					var a []string
					for _, ep := range o.(*discoveryv1.EndpointSlice).Endpoints {
						a = append(a, ep.Addresses...)
					}
					if len(a) > 3 {
						return strings.Join(a[:3], ",") + fmt.Sprintf(" + %d more...", len(a)-3)
					}
					return joinOrNone(a)
				}),
				AgeColumn,
			},
		},
		{
			GVR: net1.WithResource("ingresses"), Kind: "Ingress", Namespaced: true, ShortNames: []string{"ing"}, HasStatus: true, GenerationOnSpec: true,
			New: func() runtime.Object { return &networkingv1.Ingress{} }, NewList: func() runtime.Object { return &networkingv1.IngressList{} },
			Default: func(obj runtime.Object) {
				ing := obj.(*networkingv1.Ingress)
				for i := range ing.Spec.Rules {
					if h := ing.Spec.Rules[i].HTTP; h != nil {
						for j := range h.Paths {
							if h.Paths[j].PathType == nil {
								t := networkingv1.PathTypeImplementationSpecific
								h.Paths[j].PathType = &t
							}
						}
					}
				}
			},
			Validate: func(obj runtime.Object) field.ErrorList {
				ing := obj.(*networkingv1.Ingress)
				var errs field.ErrorList
				if ing.Spec.DefaultBackend == nil && len(ing.Spec.Rules) == 0 {
					errs = append(errs, field.Invalid(field.NewPath("spec"), "", "either `defaultBackend` or `rules` must be specified"))
				}
				return errs
			},
			Columns: []Column{
				col("Class", "string", func(o runtime.Object) interface{} {
					if c := o.(*networkingv1.Ingress).Spec.IngressClassName; c != nil {
						return *c
					}
					return "<none>"
				}),
				col("Hosts", "string", func(o runtime.Object) interface{} {
					var h []string
					for _, r := range o.(*networkingv1.Ingress).Spec.Rules {
						h = append(h, orDefault(r.Host, "*"))
					}
					if len(h) == 0 {
						return "*"
					}
					return strings.Join(h, ",")
				}),
				col("Address", "string", func(o runtime.Object) interface{} {
					var a []string
					for _, in := range o.(*networkingv1.Ingress).Status.LoadBalancer.Ingress {
						a = append(a, in.IP+in.Hostname)
					}
					return strings.Join(a, ",")
				}),
				col("Ports", "string", func(o runtime.Object) interface{} {
					if len(o.(*networkingv1.Ingress).Spec.TLS) > 0 {
						return "80, 443"
					}
					return "80"
				}),
				AgeColumn,
			},
		},
		{
			GVR: net1.WithResource("ingressclasses"), Kind: "IngressClass",
			New: func() runtime.Object { return &networkingv1.IngressClass{} }, NewList: func() runtime.Object { return &networkingv1.IngressClassList{} },
			Validate: func(obj runtime.Object) field.ErrorList {
				if obj.(*networkingv1.IngressClass).Spec.Controller == "" {
					return field.ErrorList{field.Required(field.NewPath("spec", "controller"), "")}
				}
				return nil
			},
			Columns: []Column{
				col("Controller", "string", func(o runtime.Object) interface{} { return o.(*networkingv1.IngressClass).Spec.Controller }),
				col("Parameters", "string", func(o runtime.Object) interface{} {
					if p := o.(*networkingv1.IngressClass).Spec.Parameters; p != nil {
						return p.Kind + "/" + p.Name
					}
					return "<none>"
				}),
				AgeColumn,
			},
		},
		{
			GVR: net1.WithResource("networkpolicies"), Kind: "NetworkPolicy", Namespaced: true, ShortNames: []string{"netpol"}, GenerationOnSpec: true,
			New: func() runtime.Object { return &networkingv1.NetworkPolicy{} }, NewList: func() runtime.Object { return &networkingv1.NetworkPolicyList{} },
			Default: func(obj runtime.Object) {
				np := obj.(*networkingv1.NetworkPolicy)
				if len(np.Spec.PolicyTypes) == 0 {
					np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
					if len(np.Spec.Egress) > 0 {
						np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
					}
				}
				for i := range np.Spec.Ingress {
					for j := range np.Spec.Ingress[i].Ports {
						if np.Spec.Ingress[i].Ports[j].Protocol == nil {
							p := corev1.ProtocolTCP
							np.Spec.Ingress[i].Ports[j].Protocol = &p
						}
					}
				}
			},
			Columns: []Column{
				col("Pod-Selector", "string", func(o runtime.Object) interface{} {
					s := labelSelectorString(&o.(*networkingv1.NetworkPolicy).Spec.PodSelector)
					if s == "<none>" {
						return "<none>"
					}
					return s
				}),
				AgeColumn,
			},
		},
		{
			GVR: coordinationv1.SchemeGroupVersion.WithResource("leases"), Kind: "Lease", Namespaced: true,
			New: func() runtime.Object { return &coordinationv1.Lease{} }, NewList: func() runtime.Object { return &coordinationv1.LeaseList{} },
			Columns: []Column{
				col("Holder", "string", func(o runtime.Object) interface{} {
					if h := o.(*coordinationv1.Lease).Spec.HolderIdentity; h != nil {
						return *h
					}
					return ""
				}),
				AgeColumn,
			},
		},
		{
			GVR: eventsv1.SchemeGroupVersion.WithResource("events"), Kind: "Event", Namespaced: true, ShortNames: []string{"ev"},
			Storage: eventsStorage,
			New:     func() runtime.Object { return &eventsv1.Event{} }, NewList: func() runtime.Object { return &eventsv1.EventList{} },
			Validate: func(obj runtime.Object) field.ErrorList {
				e := obj.(*eventsv1.Event)
				var errs field.ErrorList
				if e.EventTime.IsZero() {
					errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
				}
				if e.Type != "" && e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
					errs = append(errs, field.NotSupported(field.NewPath("type"), e.Type, []string{"Normal", "Warning"}))
				}
				return errs
			},
			Fields: func(obj runtime.Object) fields.Set {
				e := obj.(*eventsv1.Event)
				return fields.Set{"regarding.kind": e.Regarding.Kind, "regarding.name": e.Regarding.Name, "regarding.namespace": e.Regarding.Namespace,
					"reason": e.Reason, "type": e.Type, "reportingController": e.ReportingController}
			},
			Columns: []Column{
				col("Type", "string", func(o runtime.Object) interface{} { return o.(*eventsv1.Event).Type }),
				col("Reason", "string", func(o runtime.Object) interface{} { return o.(*eventsv1.Event).Reason }),
				col("Object", "string", func(o runtime.Object) interface{} {
					r := o.(*eventsv1.Event).Regarding
					return strings.ToLower(r.Kind) + "/" + r.Name
				}),
				col("Message", "string", func(o runtime.Object) interface{} { return o.(*eventsv1.Event).Note }),
				AgeColumn,
			},
		},
	}
}
