// Package scheduling holds the strategy of scheduling.k8s.io/v1
// PriorityClasses for the generic store and the built-in system classes (the
// Priority admission plugin resolves pods' classes).
package scheduling

import (
	"fmt"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// The priorities Kubernetes reserves: users may define up to
// HighestUserDefinablePriority; the two system classes sit above it.
const (
	HighestUserDefinablePriority = int32(1000000000)
	SystemCriticalPriority       = 2 * HighestUserDefinablePriority
	// SystemClusterCritical and SystemNodeCritical name the built-in
	// classes the server creates at start.
	SystemClusterCritical = "system-cluster-critical"
	SystemNodeCritical    = "system-node-critical"
	systemPriorityPrefix  = "system-"
)

// SystemPriorityClasses are the classes every cluster has, as Kubernetes
// creates them at start.
func SystemPriorityClasses() []*schedulingv1.PriorityClass {
	pc := func(name string, value int32, desc string) *schedulingv1.PriorityClass {
		p := &schedulingv1.PriorityClass{Value: value, Description: desc}
		p.Name = name
		return p
	}
	return []*schedulingv1.PriorityClass{
		pc(SystemNodeCritical, SystemCriticalPriority+1000, "Used for system critical pods that must not be moved from their current node."),
		pc(SystemClusterCritical, SystemCriticalPriority, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
	}
}

// knownSystemClass reports whether a "system-" class is one of the
// built-in ones with its own value and no global default.
func knownSystemClass(p *schedulingv1.PriorityClass) error {
	for _, s := range SystemPriorityClasses() {
		if s.Name == p.Name {
			if s.Value != p.Value {
				return fmt.Errorf("value of %s PriorityClass must be %d", s.Name, s.Value)
			}
			if p.GlobalDefault {
				return fmt.Errorf("globalDefault of %s PriorityClass must be false", s.Name)
			}
			return nil
		}
	}
	return fmt.Errorf("%q is not a known system priority class", p.Name)
}

// priorityClassResource is the strategy of scheduling.k8s.io/v1
// priorityclasses.
func priorityClassResource() *generic.Resource {
	pc := func(o runtime.Object) *schedulingv1.PriorityClass { return o.(*schedulingv1.PriorityClass) }
	return &generic.Resource{
		GVR: schedulingv1.SchemeGroupVersion.WithResource("priorityclasses"), Kind: "PriorityClass", ShortNames: []string{"pc"},
		New:     func() runtime.Object { return &schedulingv1.PriorityClass{} },
		NewList: func() runtime.Object { return &schedulingv1.PriorityClassList{} },
		Default: func(obj runtime.Object) {
			if p := pc(obj); p.PreemptionPolicy == nil {
				v := corev1.PreemptLowerPriority
				p.PreemptionPolicy = &v
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			p := pc(obj)
			var errs field.ErrorList
			if strings.HasPrefix(p.Name, systemPriorityPrefix) {
				if err := knownSystemClass(p); err != nil {
					errs = append(errs, field.Forbidden(field.NewPath("metadata", "name"), "priority class names with '"+systemPriorityPrefix+"' prefix are reserved for system use only. error: "+err.Error()))
				}
			} else if p.Value > HighestUserDefinablePriority {
				errs = append(errs, field.Forbidden(field.NewPath("value"), fmt.Sprintf("maximum allowed value of a user defined priority is %d", HighestUserDefinablePriority)))
			}
			if pp := p.PreemptionPolicy; pp != nil && *pp != corev1.PreemptLowerPriority && *pp != corev1.PreemptNever {
				errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *pp, []string{string(corev1.PreemptLowerPriority), string(corev1.PreemptNever)}))
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			var errs field.ErrorList
			if pc(obj).Value != pc(old).Value {
				errs = append(errs, field.Forbidden(field.NewPath("value"), "may not be changed in an update."))
			}
			if !apiequality.Semantic.DeepEqual(pc(obj).PreemptionPolicy, pc(old).PreemptionPolicy) {
				errs = append(errs, field.Invalid(field.NewPath("preemptionPolicy"), pc(obj).PreemptionPolicy, "field is immutable"))
			}
			return errs
		},
		Columns: []generic.Column{
			printers.Col("Value", "integer", func(o runtime.Object) interface{} { return int64(pc(o).Value) }),
			printers.Col("Global-Default", "boolean", func(o runtime.Object) interface{} { return pc(o).GlobalDefault }),
			printers.AgeColumn,
			printers.Col("PreemptionPolicy", "string", func(o runtime.Object) interface{} {
				if pp := pc(o).PreemptionPolicy; pp != nil {
					return string(*pp)
				}
				return ""
			}),
		},
	}
}

// Resources are the group's kinds.
func Resources() []*generic.Resource {
	return []*generic.Resource{priorityClassResource()}
}
