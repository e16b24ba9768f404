package registry

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ephemeralContainersSubresource is pods/ephemeralcontainers: an update of
// the pod that may only add ephemeral containers (kubectl debug).
const ephemeralContainersSubresource = "ephemeralcontainers"

// prepareEphemeralUpdate keeps everything of the stored pod but its
// ephemeral containers when the update comes through
// pods/ephemeralcontainers, as Kubernetes' strategy for it does.
func prepareEphemeralUpdate(sub string, obj, old runtime.Object) {
	if sub != ephemeralContainersSubresource {
		return
	}
	p, o := obj.(*corev1.Pod), old.(*corev1.Pod)
	next := o.DeepCopy()
	next.ResourceVersion = p.ResourceVersion
	next.ManagedFields = p.ManagedFields
	next.Spec.EphemeralContainers = p.Spec.EphemeralContainers
	*p = *next
}

// validateEphemeralUpdate checks an update through pods/ephemeralcontainers:
// existing ephemeral containers stay as they are, and new ones are valid
// ephemeral containers with names no other container of the pod has.
func validateEphemeralUpdate(sub string, obj, old runtime.Object) field.ErrorList {
	if sub != ephemeralContainersSubresource {
		return nil
	}
	p, o := obj.(*corev1.Pod), old.(*corev1.Pod)
	ep := field.NewPath("spec", "ephemeralContainers")
	var errs field.ErrorList
	now := map[string]*corev1.EphemeralContainer{}
	for i := range p.Spec.EphemeralContainers {
		now[p.Spec.EphemeralContainers[i].Name] = &p.Spec.EphemeralContainers[i]
	}
	for _, was := range o.Spec.EphemeralContainers {
		if c, ok := now[was.Name]; !ok || !semanticEqual(*c, was) {
			errs = append(errs, field.Forbidden(ep, fmt.Sprintf("existing ephemeral containers %q may not be changed", was.Name)))
		}
	}
	names := map[string]bool{}
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			names[c.Name] = true
		}
	}
	for i, c := range p.Spec.EphemeralContainers {
		ip := ep.Index(i)
		switch {
		case c.Name == "":
			errs = append(errs, field.Required(ip.Child("name"), ""))
		case names[c.Name]:
			errs = append(errs, field.Duplicate(ip.Child("name"), c.Name))
		default:
			for _, msg := range validation.NameIsDNSLabel(c.Name, false) {
				errs = append(errs, field.Invalid(ip.Child("name"), c.Name, msg))
			}
		}
		names[c.Name] = true
		if c.Image == "" {
			errs = append(errs, field.Required(ip.Child("image"), ""))
		}
		if len(c.Ports) > 0 {
			errs = append(errs, field.Forbidden(ip.Child("ports"), "cannot be set for an Ephemeral Container"))
		}
		for name, set := range map[string]bool{
			"livenessProbe": c.LivenessProbe != nil, "readinessProbe": c.ReadinessProbe != nil, "startupProbe": c.StartupProbe != nil,
			"lifecycle": c.Lifecycle != nil, "resources": len(c.Resources.Limits)+len(c.Resources.Requests) > 0,
		} {
			if set {
				errs = append(errs, field.Forbidden(ip.Child(name), "cannot be set for an Ephemeral Container"))
			}
		}
		if t := c.TargetContainerName; t != "" && !isContainerOf(p, t) {
			errs = append(errs, field.NotFound(ip.Child("targetContainerName"), t))
		}
	}
	return errs
}

func isContainerOf(p *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}
