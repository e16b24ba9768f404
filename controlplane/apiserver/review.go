package apiserver

import (
	"context"
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/rbac"
)

// User is who made a request, as authentication found it.
type User = admission.User

// WithUser records the request's user for the handlers and admission.
func WithUser(ctx context.Context, u User) context.Context {
	return admission.WithUser(ctx, u)
}

// UserFrom is the authenticated user of a request (handlers beside the API,
// as the server join endpoint, check it themselves).
func UserFrom(ctx context.Context) (User, bool) { return userFrom(ctx) }

func userFrom(ctx context.Context) (User, bool) {
	return admission.UserFrom(ctx)
}

// everything is the answer of a server without an authorizer.
const everything = "this server runs without RBAC: every authenticated client may do everything"

// serveReview decodes a review of kind gvk into review, lets answer fill
// its status, and writes it back (JSON, YAML or protobuf; never a Table).
func (s *Server) serveReview(w http.ResponseWriter, r *http.Request, review runtime.Object, gvk schema.GroupVersionKind, answer func() error) {
	if r.Method != http.MethodPost {
		s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, r.Method))
		return
	}
	data, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := s.decodeBody(w, r, data, review, gvk); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := answer(); err != nil {
		s.writeError(w, r, err)
		return
	}
	review.GetObjectKind().SetGroupVersionKind(gvk)
	choice, ok := negotiate(r, func(string, string, string) bool { return false })
	if !ok {
		s.writeError(w, r, newNotAcceptable("only application/json, application/yaml and application/vnd.kubernetes.protobuf are served"))
		return
	}
	s.encode(w, http.StatusCreated, choice, review)
}

// selfSubjectAccessReview answers `kubectl auth can-i`.
func (s *Server) selfSubjectAccessReview(w http.ResponseWriter, r *http.Request) {
	review := &authorizationv1.SelfSubjectAccessReview{}
	gvk := authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectAccessReview")
	s.serveReview(w, r, review, gvk, func() error {
		u, _ := userFrom(r.Context())
		st, err := s.accessReview(gvk, u, review.Spec.ResourceAttributes, review.Spec.NonResourceAttributes)
		review.Status = st
		return err
	})
}

// subjectAccessReview answers whether any user may do something (for
// tools that check on behalf of others, such as kube-rbac-proxy).
func (s *Server) subjectAccessReview(w http.ResponseWriter, r *http.Request) {
	review := &authorizationv1.SubjectAccessReview{}
	gvk := authorizationv1.SchemeGroupVersion.WithKind("SubjectAccessReview")
	s.serveReview(w, r, review, gvk, func() error {
		u := User{Name: review.Spec.User, UID: review.Spec.UID, Groups: review.Spec.Groups}
		st, err := s.accessReview(gvk, u, review.Spec.ResourceAttributes, review.Spec.NonResourceAttributes)
		review.Status = st
		return err
	})
}

// localSubjectAccessReview is subjectAccessReview within one namespace.
func (s *Server) localSubjectAccessReview(w http.ResponseWriter, r *http.Request) {
	review := &authorizationv1.LocalSubjectAccessReview{}
	gvk := authorizationv1.SchemeGroupVersion.WithKind("LocalSubjectAccessReview")
	namespace := r.PathValue("namespace")
	s.serveReview(w, r, review, gvk, func() error {
		ra := review.Spec.ResourceAttributes
		if ra == nil || review.Spec.NonResourceAttributes != nil {
			return apierrors.NewInvalid(gvk.GroupKind(), "", field.ErrorList{field.Required(field.NewPath("spec", "resourceAttributes"), "a local review is about resources in its namespace")})
		}
		if ra.Namespace != namespace {
			return apierrors.NewInvalid(gvk.GroupKind(), "", field.ErrorList{field.Invalid(field.NewPath("spec", "resourceAttributes", "namespace"), ra.Namespace,
				"must be the namespace of the request, "+namespace)})
		}
		review.Namespace = namespace
		u := User{Name: review.Spec.User, UID: review.Spec.UID, Groups: review.Spec.Groups}
		st, err := s.accessReview(gvk, u, ra, nil)
		review.Status = st
		return err
	})
}

// accessReview decides one access review's question for u.
func (s *Server) accessReview(gvk schema.GroupVersionKind, u User, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) (authorizationv1.SubjectAccessReviewStatus, error) {
	if (ra == nil) == (nra == nil) {
		return authorizationv1.SubjectAccessReviewStatus{}, apierrors.NewInvalid(gvk.GroupKind(), "",
			field.ErrorList{field.Required(field.NewPath("spec"), "exactly one of nonResourceAttributes or resourceAttributes must be specified")})
	}
	if s.cfg.Authorizer == nil {
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: everything}, nil
	}
	a := rbac.Attributes{User: u.Name, Groups: u.Groups}
	if ra != nil {
		a.ResourceRequest, a.Verb, a.APIGroup, a.Resource, a.Subresource, a.Namespace, a.Name =
			true, ra.Verb, ra.Group, ra.Resource, ra.Subresource, ra.Namespace, ra.Name
	} else {
		a.Verb, a.Path = nra.Verb, nra.Path
	}
	allowed, reason := s.allowed(a)
	return authorizationv1.SubjectAccessReviewStatus{Allowed: allowed, Reason: reason}, nil
}

// selfSubjectRulesReview answers `kubectl auth can-i --list`: the rules
// bound to the user in the namespace and cluster-wide.
func (s *Server) selfSubjectRulesReview(w http.ResponseWriter, r *http.Request) {
	review := &authorizationv1.SelfSubjectRulesReview{}
	s.serveReview(w, r, review, authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectRulesReview"), func() error {
		u, _ := userFrom(r.Context())
		rules := []rbacv1.PolicyRule{
			{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
			{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
		}
		var problems []string
		if s.cfg.Authorizer != nil {
			rules, problems = s.cfg.Authorizer.RulesFor(u.Name, u.Groups, review.Spec.Namespace)
		}
		st := authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{}, NonResourceRules: []authorizationv1.NonResourceRule{}}
		for _, rule := range rules {
			if len(rule.NonResourceURLs) > 0 {
				st.NonResourceRules = append(st.NonResourceRules, authorizationv1.NonResourceRule{Verbs: rule.Verbs, NonResourceURLs: rule.NonResourceURLs})
				continue
			}
			st.ResourceRules = append(st.ResourceRules, authorizationv1.ResourceRule{Verbs: rule.Verbs, APIGroups: rule.APIGroups,
				Resources: rule.Resources, ResourceNames: rule.ResourceNames})
		}
		if len(problems) > 0 {
			st.Incomplete, st.EvaluationError = true, strings.Join(problems, ", ")
		}
		review.Status = st
		return nil
	})
}

// selfSubjectReview answers `kubectl auth whoami`.
func (s *Server) selfSubjectReview(w http.ResponseWriter, r *http.Request) {
	review := &authenticationv1.SelfSubjectReview{}
	s.serveReview(w, r, review, authenticationv1.SchemeGroupVersion.WithKind("SelfSubjectReview"), func() error {
		u, ok := userFrom(r.Context())
		if !ok {
			return apierrors.NewUnauthorized("the request carries no user")
		}
		review.Status.UserInfo = authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups}
		return nil
	})
}

// tokenReview answers whether a token is good and whose it is, for
// services that take service account tokens from their own clients.
func (s *Server) tokenReview(w http.ResponseWriter, r *http.Request) {
	review := &authenticationv1.TokenReview{}
	s.serveReview(w, r, review, authenticationv1.SchemeGroupVersion.WithKind("TokenReview"), func() error {
		return s.tokenAuth.Review(r.Context(), review)
	})
}
