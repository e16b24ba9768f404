package registry

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// apiServiceResource is apiregistration.k8s.io/v1 APIServices: a group
// version served by this server (Local, no service) or by another server
// behind a Service, to which the API server passes its requests.
func apiServiceResource() *Resource {
	as := func(o runtime.Object) *apiregistrationv1.APIService { return o.(*apiregistrationv1.APIService) }
	return &Resource{
		GVR: apiregistrationv1.SchemeGroupVersion.WithResource("apiservices"), Kind: "APIService",
		Categories: []string{"api-extensions"}, HasStatus: true,
		// "<version>.<group>", and "v1." for the core group: not a DNS
		// subdomain, so the usual name rule does not apply.
		NameValidator: func(name string, prefix bool) []string {
			version, group, ok := strings.Cut(name, ".")
			if !ok {
				return []string{"must be <version>.<group>"}
			}
			msgs := validation.IsDNS1035Label(version)
			if group != "" {
				msgs = append(msgs, validation.IsDNS1123Subdomain(group)...)
			}
			return msgs
		},
		New:     func() runtime.Object { return &apiregistrationv1.APIService{} },
		NewList: func() runtime.Object { return &apiregistrationv1.APIServiceList{} },
		Default: func(o runtime.Object) {
			if s := as(o).Spec.Service; s != nil && s.Port == nil {
				s.Port = ptr.To[int32](443)
			}
		},
		Validate:       func(o runtime.Object) field.ErrorList { return validateAPIService(as(o)) },
		ValidateUpdate: func(o, _ runtime.Object) field.ErrorList { return validateAPIService(as(o)) },
		Columns: []Column{
			printers.Col("Service", "string", func(o runtime.Object) interface{} {
				if s := as(o).Spec.Service; s != nil {
					return s.Namespace + "/" + s.Name
				}
				return "Local"
			}),
			printers.Col("Available", "string", func(o runtime.Object) interface{} {
				for _, c := range as(o).Status.Conditions {
					if c.Type == apiregistrationv1.Available {
						if c.Status == apiregistrationv1.ConditionTrue {
							return string(c.Status)
						}
						return fmt.Sprintf("%s (%s)", c.Status, c.Reason)
					}
				}
				return "Unknown"
			}),
		},
	}
}

// validateAPIService checks what Kubernetes' aggregator checks: the name
// is <version>.<group>, priorities in range, a service fully named, TLS
// either verified with a CA bundle or skipped, not both.
func validateAPIService(a *apiregistrationv1.APIService) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if want := a.Spec.Version + "." + a.Spec.Group; a.Name != want {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), a.Name, "must be `spec.version+\".\"+spec.group`: \""+want+"\""))
	}
	if a.Spec.Group == "" && a.Spec.Service != nil {
		errs = append(errs, field.Required(spec.Child("group"), "only local APIServices may have an empty group"))
	} else if a.Spec.Group != "" {
		for _, msg := range validation.IsDNS1123Subdomain(a.Spec.Group) {
			errs = append(errs, field.Invalid(spec.Child("group"), a.Spec.Group, msg))
		}
	}
	for _, msg := range validation.IsDNS1035Label(a.Spec.Version) {
		errs = append(errs, field.Invalid(spec.Child("version"), a.Spec.Version, msg))
	}
	if p := a.Spec.GroupPriorityMinimum; p <= 0 || p > 20000 {
		errs = append(errs, field.Invalid(spec.Child("groupPriorityMinimum"), p, "must be positive and less than 20000"))
	}
	if p := a.Spec.VersionPriority; p <= 0 || p > 1000 {
		errs = append(errs, field.Invalid(spec.Child("versionPriority"), p, "must be positive and less than 1000"))
	}
	if s := a.Spec.Service; s != nil {
		if s.Namespace == "" {
			errs = append(errs, field.Required(spec.Child("service", "namespace"), ""))
		}
		if s.Name == "" {
			errs = append(errs, field.Required(spec.Child("service", "name"), ""))
		}
		if s.Port != nil {
			for _, msg := range validation.IsValidPortNum(int(*s.Port)) {
				errs = append(errs, field.Invalid(spec.Child("service", "port"), *s.Port, msg))
			}
		}
		if a.Spec.InsecureSkipTLSVerify && len(a.Spec.CABundle) > 0 {
			errs = append(errs, field.Invalid(spec.Child("insecureSkipTLSVerify"), a.Spec.InsecureSkipTLSVerify, "may not be true if caBundle is present"))
		}
	} else {
		if a.Spec.InsecureSkipTLSVerify {
			errs = append(errs, field.Invalid(spec.Child("insecureSkipTLSVerify"), true, "local APIservices may not have insecureSkipTLSVerify"))
		}
		if len(a.Spec.CABundle) > 0 {
			errs = append(errs, field.Invalid(spec.Child("caBundle"), "<bytes>", "local APIservices may not have a caBundle"))
		}
	}
	return errs
}
