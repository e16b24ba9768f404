package registry

import (
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Reviews are the create-only resources: access reviews (`kubectl auth
// can-i`, SubjectAccessReview) and token and identity reviews. A review is
// asked and answered, never stored; discovery and OpenAPI list them as
// Kubernetes does, and the API server answers them with its own handlers.
func Reviews() []*Resource {
	authz, authn := authorizationv1.SchemeGroupVersion, authenticationv1.SchemeGroupVersion
	review := func(gvr, kind string, namespaced bool, group string, newObj func() runtime.Object) *Resource {
		gv := authz
		if group == authn.Group {
			gv = authn
		}
		return &Resource{GVR: gv.WithResource(gvr), Kind: kind, Namespaced: namespaced, CreateOnly: true, New: newObj}
	}
	return []*Resource{
		review("selfsubjectaccessreviews", "SelfSubjectAccessReview", false, authz.Group, func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} }),
		review("selfsubjectrulesreviews", "SelfSubjectRulesReview", false, authz.Group, func() runtime.Object { return &authorizationv1.SelfSubjectRulesReview{} }),
		review("subjectaccessreviews", "SubjectAccessReview", false, authz.Group, func() runtime.Object { return &authorizationv1.SubjectAccessReview{} }),
		review("localsubjectaccessreviews", "LocalSubjectAccessReview", true, authz.Group, func() runtime.Object { return &authorizationv1.LocalSubjectAccessReview{} }),
		review("selfsubjectreviews", "SelfSubjectReview", false, authn.Group, func() runtime.Object { return &authenticationv1.SelfSubjectReview{} }),
		review("tokenreviews", "TokenReview", false, authn.Group, func() runtime.Object { return &authenticationv1.TokenReview{} }),
	}
}
