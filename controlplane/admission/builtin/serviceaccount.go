package builtin

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// ServiceAccount gives a new pod its API credentials volume, as Kubernetes'
// ServiceAccount admission does; the pod's service account, when it
// exists, may opt out for pods that do not say.
type ServiceAccount struct {
	reg *generic.Registry
}

// Name names the plugin.
func (p *ServiceAccount) Name() string { return "ServiceAccount" }

// Handles creates.
func (p *ServiceAccount) Handles(op admission.Operation) bool { return op == admission.Create }

// Admit injects the volume into a new pod.
func (p *ServiceAccount) Admit(ctx context.Context, a *admission.Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok || a.Subresource != "" {
		return nil
	}
	var accountAutomount *bool
	if pod.Spec.AutomountServiceAccountToken == nil {
		name := pod.Spec.ServiceAccountName
		if name == "" {
			name = pod.Spec.DeprecatedServiceAccount
		}
		if name == "" {
			name = "default"
		}
		if st := coreStore(p.reg, "serviceaccounts"); st != nil {
			if obj, err := st.Lookup(ctx, pod.Namespace, name); err == nil {
				accountAutomount = obj.(*corev1.ServiceAccount).AutomountServiceAccountToken
			}
		}
	}
	registry.InjectAPIAccess(pod, accountAutomount)
	return nil
}
