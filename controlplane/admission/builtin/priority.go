package builtin

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// Priority resolves a new pod's priorityClassName into spec.priority and
// spec.preemptionPolicy (the global default class, else 0, when it names
// none), refuses unknown classes and a priority the pod sets itself, and
// keeps PriorityClasses to one global default, as Kubernetes' Priority
// admission does.
type Priority struct {
	reg *generic.Registry
}

// Name names the plugin.
func (p *Priority) Name() string { return "Priority" }

// Handles creates and updates (a PriorityClass made the default later).
func (p *Priority) Handles(op admission.Operation) bool {
	return op == admission.Create || op == admission.Update
}

func (p *Priority) classes() *generic.Store {
	if p.reg == nil {
		return nil
	}
	return p.reg.Store(schedulingv1.SchemeGroupVersion.WithResource("priorityclasses"))
}

// Admit sets a new pod's priority from its class.
func (p *Priority) Admit(ctx context.Context, a *admission.Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok || a.Operation != admission.Create || a.Subresource != "" {
		return nil
	}
	st := p.classes()
	if st == nil {
		return nil
	}
	forbid := func(msg string) error {
		return apierrors.NewForbidden(corev1.Resource("pods"), pod.Name, fmt.Errorf("%s", msg))
	}
	var value int32
	policy := corev1.PreemptLowerPriority
	if name := pod.Spec.PriorityClassName; name == "" {
		def, err := p.globalDefault(ctx, st)
		if err != nil {
			return err
		}
		if def != nil {
			pod.Spec.PriorityClassName, value = def.Name, def.Value
			if def.PreemptionPolicy != nil {
				policy = *def.PreemptionPolicy
			}
		}
	} else {
		obj, err := st.Lookup(ctx, "", name)
		if apierrors.IsNotFound(err) {
			return forbid(fmt.Sprintf("no PriorityClass with name %s was found", name))
		}
		if err != nil {
			return fmt.Errorf("reading PriorityClass %s: %w", name, err)
		}
		pc := obj.(*schedulingv1.PriorityClass)
		value = pc.Value
		if pc.PreemptionPolicy != nil {
			policy = *pc.PreemptionPolicy
		}
	}
	if pod.Spec.Priority != nil && *pod.Spec.Priority != value {
		return forbid(fmt.Sprintf("the integer value of priority (%d) must not be provided in pod spec; priority admission controller computed %d from the given PriorityClass name", *pod.Spec.Priority, value))
	}
	pod.Spec.Priority = &value
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy != policy {
		return forbid(fmt.Sprintf("the string value of PreemptionPolicy (%s) must not be provided in pod spec; priority admission controller computed %s from the given PriorityClass name", *pod.Spec.PreemptionPolicy, policy))
	}
	pod.Spec.PreemptionPolicy = &policy
	return nil
}

// globalDefault is the class marked globalDefault (the lowest value when
// several are, as Kubernetes picks), or nil.
func (p *Priority) globalDefault(ctx context.Context, st *generic.Store) (*schedulingv1.PriorityClass, error) {
	items, err := st.CachedList(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing PriorityClasses: %w", err)
	}
	var def *schedulingv1.PriorityClass
	for _, o := range items {
		pc := o.(*schedulingv1.PriorityClass)
		if pc.GlobalDefault && (def == nil || pc.Value < def.Value) {
			def = pc
		}
	}
	return def, nil
}

// Validate keeps PriorityClasses to one global default.
func (p *Priority) Validate(ctx context.Context, a *admission.Attributes) error {
	pc, ok := a.Object.(*schedulingv1.PriorityClass)
	if !ok || !pc.GlobalDefault {
		return nil
	}
	st := p.classes()
	if st == nil {
		return nil
	}
	def, err := p.globalDefault(ctx, st)
	if err != nil {
		return err
	}
	if def != nil && def.Name != pc.Name {
		return apierrors.NewForbidden(schedulingv1.Resource("priorityclasses"), pc.Name,
			fmt.Errorf("PriorityClass %s is already marked as default. Only one default can exist", def.Name))
	}
	return nil
}
