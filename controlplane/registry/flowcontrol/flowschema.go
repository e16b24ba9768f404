package flowcontrol

import (
	"fmt"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// flowSchemaResource is the strategy of flowcontrol.apiserver.k8s.io/v1
// flowschemas (+status). The objects are served; requests are not yet
// classified by them (fair queuing is issue 21 item 6).
func flowSchemaResource() *generic.Resource {
	fs := func(o runtime.Object) *flowcontrolv1.FlowSchema { return o.(*flowcontrolv1.FlowSchema) }
	return &generic.Resource{
		GVR: flowcontrolv1.SchemeGroupVersion.WithResource("flowschemas"), Kind: "FlowSchema", HasStatus: true, GenerationOnSpec: true,
		New:     func() runtime.Object { return &flowcontrolv1.FlowSchema{} },
		NewList: func() runtime.Object { return &flowcontrolv1.FlowSchemaList{} },
		Default: func(obj runtime.Object) {
			if s := &fs(obj).Spec; s.MatchingPrecedence == 0 {
				s.MatchingPrecedence = 1000
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateFlowSchemaSpec(&fs(obj).Spec) },
		Columns: []generic.Column{
			printers.Col("PriorityLevel", "string", func(o runtime.Object) interface{} { return fs(o).Spec.PriorityLevelConfiguration.Name }),
			printers.Col("MatchingPrecedence", "string", func(o runtime.Object) interface{} { return fmt.Sprint(fs(o).Spec.MatchingPrecedence) }),
			printers.Col("DistinguisherMethod", "string", func(o runtime.Object) interface{} {
				if d := fs(o).Spec.DistinguisherMethod; d != nil {
					return string(d.Type)
				}
				return "<none>"
			}),
			printers.AgeColumn,
			printers.Col("MissingPL", "string", func(o runtime.Object) interface{} {
				for _, c := range fs(o).Status.Conditions {
					if c.Type == flowcontrolv1.FlowSchemaConditionDangling {
						return string(c.Status)
					}
				}
				return "?"
			}),
		},
	}
}

// validateFlowSchemaSpec checks what Kubernetes' validation of a v1
// FlowSchema checks most: its priority level, precedence, distinguisher,
// subjects and rules.
func validateFlowSchemaSpec(s *flowcontrolv1.FlowSchemaSpec) field.ErrorList {
	sp := field.NewPath("spec")
	var errs field.ErrorList
	if s.MatchingPrecedence <= 0 || s.MatchingPrecedence > 10000 {
		errs = append(errs, field.Invalid(sp.Child("matchingPrecedence"), s.MatchingPrecedence, "must be between 1 and 10000 inclusive"))
	}
	pp := sp.Child("priorityLevelConfiguration", "name")
	if s.PriorityLevelConfiguration.Name == "" {
		errs = append(errs, field.Required(pp, "must reference a priority level"))
	} else {
		for _, msg := range validation.NameIsDNSSubdomain(s.PriorityLevelConfiguration.Name, false) {
			errs = append(errs, field.Invalid(pp, s.PriorityLevelConfiguration.Name, msg))
		}
	}
	if d := s.DistinguisherMethod; d != nil && d.Type != flowcontrolv1.FlowDistinguisherMethodByUserType && d.Type != flowcontrolv1.FlowDistinguisherMethodByNamespaceType {
		errs = append(errs, field.NotSupported(sp.Child("distinguisherMethod", "type"), d.Type, []string{string(flowcontrolv1.FlowDistinguisherMethodByUserType), string(flowcontrolv1.FlowDistinguisherMethodByNamespaceType)}))
	}
	for i, r := range s.Rules {
		rp := sp.Child("rules").Index(i)
		if len(r.Subjects) == 0 {
			errs = append(errs, field.Required(rp.Child("subjects"), "subjects must contain at least one value"))
		}
		for j, sub := range r.Subjects {
			jp := rp.Child("subjects").Index(j)
			switch sub.Kind {
			case flowcontrolv1.SubjectKindUser:
				if sub.User == nil || sub.User.Name == "" {
					errs = append(errs, field.Required(jp.Child("user", "name"), "username is required"))
				}
			case flowcontrolv1.SubjectKindGroup:
				if sub.Group == nil || sub.Group.Name == "" {
					errs = append(errs, field.Required(jp.Child("group", "name"), "name is required"))
				}
			case flowcontrolv1.SubjectKindServiceAccount:
				if sub.ServiceAccount == nil || sub.ServiceAccount.Name == "" || sub.ServiceAccount.Namespace == "" {
					errs = append(errs, field.Required(jp.Child("serviceAccount"), "name and namespace are required"))
				}
			default:
				errs = append(errs, field.NotSupported(jp.Child("kind"), sub.Kind, []string{string(flowcontrolv1.SubjectKindServiceAccount), string(flowcontrolv1.SubjectKindGroup), string(flowcontrolv1.SubjectKindUser)}))
			}
		}
		if len(r.ResourceRules) == 0 && len(r.NonResourceRules) == 0 {
			errs = append(errs, field.Required(rp, "at least one of resourceRules and nonResourceRules has to be non-empty"))
		}
		for j, rr := range r.ResourceRules {
			jp := rp.Child("resourceRules").Index(j)
			if len(rr.Verbs) == 0 {
				errs = append(errs, field.Required(jp.Child("verbs"), "verbs must contain at least one value"))
			}
			if len(rr.APIGroups) == 0 {
				errs = append(errs, field.Required(jp.Child("apiGroups"), "resource rules must supply at least one api group"))
			}
			if len(rr.Resources) == 0 {
				errs = append(errs, field.Required(jp.Child("resources"), "resource rules must supply at least one resource"))
			}
			if len(rr.Namespaces) == 0 && !rr.ClusterScope {
				errs = append(errs, field.Required(jp.Child("namespaces"), "resource rules that are not cluster scoped must supply at least one namespace"))
			}
		}
		for j, nr := range r.NonResourceRules {
			jp := rp.Child("nonResourceRules").Index(j)
			if len(nr.Verbs) == 0 {
				errs = append(errs, field.Required(jp.Child("verbs"), "verbs must contain at least one value"))
			}
			if len(nr.NonResourceURLs) == 0 {
				errs = append(errs, field.Required(jp.Child("nonResourceURLs"), "nonResourceURLs must contain at least one value"))
			}
		}
	}
	return errs
}
