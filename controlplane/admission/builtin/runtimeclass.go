package builtin

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// RuntimeClass gives a new pod what its runtimeClassName's RuntimeClass
// asks for — its overhead, node selector and tolerations — and refuses a
// class that does not exist, as Kubernetes' RuntimeClass admission does.
type RuntimeClass struct {
	reg *generic.Registry
}

// Name names the plugin.
func (p *RuntimeClass) Name() string { return "RuntimeClass" }

// Handles creates.
func (p *RuntimeClass) Handles(op admission.Operation) bool { return op == admission.Create }

// Admit applies the class to a new pod.
func (p *RuntimeClass) Admit(ctx context.Context, a *admission.Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok || a.Subresource != "" || pod.Spec.RuntimeClassName == nil || *pod.Spec.RuntimeClassName == "" || p.reg == nil {
		return nil
	}
	st := p.reg.Store(nodev1.SchemeGroupVersion.WithResource("runtimeclasses"))
	if st == nil {
		return nil
	}
	forbid := func(format string, args ...interface{}) error {
		return apierrors.NewForbidden(corev1.Resource("pods"), pod.Name, fmt.Errorf("pod rejected: "+format, args...))
	}
	name := *pod.Spec.RuntimeClassName
	obj, err := st.Lookup(ctx, "", name)
	if apierrors.IsNotFound(err) {
		return forbid("RuntimeClass %q not found (`kubectl get runtimeclasses` lists the classes there are; Petrel makes crun and runc)", name)
	}
	if err != nil {
		return fmt.Errorf("reading RuntimeClass %s: %w", name, err)
	}
	rc := obj.(*nodev1.RuntimeClass)
	if rc.Overhead != nil {
		if pod.Spec.Overhead != nil && !apiequality.Semantic.DeepEqual(pod.Spec.Overhead, rc.Overhead.PodFixed) {
			return forbid("Pod's Overhead doesn't match RuntimeClass's defined Overhead")
		}
		pod.Spec.Overhead = rc.Overhead.PodFixed.DeepCopy()
	} else if pod.Spec.Overhead != nil {
		return forbid("Pod Overhead set without corresponding RuntimeClass defined Overhead")
	}
	if s := rc.Scheduling; s != nil {
		for k, v := range s.NodeSelector {
			if cur, ok := pod.Spec.NodeSelector[k]; ok && cur != v {
				return forbid("conflict: runtimeClass.scheduling.nodeSelector[%s] = %s; pod.spec.nodeSelector[%s] = %s", k, v, k, cur)
			}
			if pod.Spec.NodeSelector == nil {
				pod.Spec.NodeSelector = map[string]string{}
			}
			pod.Spec.NodeSelector[k] = v
		}
		for _, t := range s.Tolerations {
			if !hasToleration(pod.Spec.Tolerations, t) {
				pod.Spec.Tolerations = append(pod.Spec.Tolerations, t)
			}
		}
	}
	return nil
}

func hasToleration(ts []corev1.Toleration, t corev1.Toleration) bool {
	for _, x := range ts {
		if apiequality.Semantic.DeepEqual(x, t) {
			return true
		}
	}
	return false
}
