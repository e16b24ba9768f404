// Package builtin holds the admission plugins Petrel always runs, in the
// order Kubernetes runs its own: ServiceAccount, CertificateRequester,
// LimitRanger, Priority, RuntimeClass and DefaultStorageClass mutate
// (Priority validates too); RBAC escalation, NodeRestriction, PodSecurity,
// certificate approval and ResourceQuota (last: what is refused after it
// was charged) validate. Each is a member
// of an admission.Chain and knows nothing of HTTP; they read other objects
// through the registry's stores.
package builtin

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/nodeauth"
	"github.com/petrel-project/petrel/controlplane/rbac"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// Config is what the plugins need.
type Config struct {
	// Registry gives the plugins the objects they read (service accounts,
	// limit ranges, quotas, pods).
	Registry *generic.Registry
	// Authorizer is RBAC; nil turns off the plugins that ask it (escalation,
	// certificate approval).
	Authorizer *rbac.Authorizer
	// NodeAuthorizer, when set, restricts what nodes write (NodeRestriction).
	NodeAuthorizer *nodeauth.Authorizer
	// Dynamic are the webhook and policy plugins (controlplane/admission/
	// webhook), placed where Kubernetes puts them: after the built-in
	// mutating plugins, before ResourceQuota.
	Dynamic []admission.Interface
	// PodSecurity, when set, judges pods by their namespace's Pod Security
	// labels (controlplane/admission/podsecurity), after NodeRestriction as
	// in Kubernetes' order.
	PodSecurity admission.Interface
}

// Chain is the built-in plugins in order.
func Chain(cfg Config) admission.Chain {
	c := admission.Chain{
		&ServiceAccount{reg: cfg.Registry},
		&CertificateRequester{},
		&LimitRanger{reg: cfg.Registry},
		&Priority{reg: cfg.Registry},
		&RuntimeClass{reg: cfg.Registry},
		&DefaultStorageClass{reg: cfg.Registry},
		&RBACEscalation{authz: cfg.Authorizer},
		&NodeRestriction{reg: cfg.Registry, nodes: cfg.NodeAuthorizer},
	}
	if cfg.PodSecurity != nil {
		c = append(c, cfg.PodSecurity)
	}
	c = append(c, &CertificateApproval{authz: cfg.Authorizer, nodes: cfg.NodeAuthorizer})
	c = append(c, cfg.Dynamic...)
	return append(c, &ResourceQuota{reg: cfg.Registry})
}

// coreStore is the store of a core/v1 resource, nil when not served.
func coreStore(reg *generic.Registry, resource string) *generic.Store {
	if reg == nil {
		return nil
	}
	return reg.Store(corev1.SchemeGroupVersion.WithResource(resource))
}

// allowed decides attrs for a node by the Node authorizer first, then
// RBAC, as the API server's authorization does.
func allowed(authz *rbac.Authorizer, nodes *nodeauth.Authorizer, attrs rbac.Attributes) bool {
	if nodes != nil {
		if node, ok := nodeauth.NodeName(attrs.User, attrs.Groups); ok {
			if ok, _ := nodes.Authorize(node, attrs); ok {
				return true
			}
		}
	}
	ok, _ := authz.Authorize(attrs)
	return ok
}
