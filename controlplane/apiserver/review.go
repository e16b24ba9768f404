package apiserver

import (
	"context"
	"net/http"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// User is who made a request, as authentication found it.
type User struct {
	Name   string
	UID    string
	Groups []string
}

type userKey struct{}

// WithUser records the request's user for the handlers.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

func userFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

// noRBAC is the reason every review gives: there is no authorization yet.
const noRBAC = "Petrel has no RBAC yet: every authenticated client may do everything"

// reviewRequest decodes a review's body into into; false when an error
// has been written.
func (s *Server) reviewRequest(w http.ResponseWriter, r *http.Request, into runtime.Object, gvk schema.GroupVersionKind) bool {
	if r.Method != http.MethodPost {
		s.writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, r.Method))
		return false
	}
	data, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	if _, err := s.decodeBody(w, r, data, into, gvk); err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// selfSubjectAccessReview answers `kubectl auth can-i`: yes, for now.
func (s *Server) selfSubjectAccessReview(w http.ResponseWriter, r *http.Request) {
	gvk := authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectAccessReview")
	review := &authorizationv1.SelfSubjectAccessReview{}
	if !s.reviewRequest(w, r, review, gvk) {
		return
	}
	review.TypeMeta = metav1.TypeMeta{Kind: gvk.Kind, APIVersion: gvk.GroupVersion().String()}
	review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: noRBAC}
	s.writeReview(w, r, review)
}

// selfSubjectRulesReview answers `kubectl auth can-i --list`: everything.
func (s *Server) selfSubjectRulesReview(w http.ResponseWriter, r *http.Request) {
	gvk := authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectRulesReview")
	review := &authorizationv1.SelfSubjectRulesReview{}
	if !s.reviewRequest(w, r, review, gvk) {
		return
	}
	review.TypeMeta = metav1.TypeMeta{Kind: gvk.Kind, APIVersion: gvk.GroupVersion().String()}
	review.Status = authorizationv1.SubjectRulesReviewStatus{
		ResourceRules:    []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}},
		NonResourceRules: []authorizationv1.NonResourceRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
	}
	s.writeReview(w, r, review)
}

// selfSubjectReview answers `kubectl auth whoami`.
func (s *Server) selfSubjectReview(w http.ResponseWriter, r *http.Request) {
	gvk := authenticationv1.SchemeGroupVersion.WithKind("SelfSubjectReview")
	review := &authenticationv1.SelfSubjectReview{}
	if !s.reviewRequest(w, r, review, gvk) {
		return
	}
	u, ok := userFrom(r.Context())
	if !ok {
		s.writeError(w, r, apierrors.NewUnauthorized("the request carries no user"))
		return
	}
	review.TypeMeta = metav1.TypeMeta{Kind: gvk.Kind, APIVersion: gvk.GroupVersion().String()}
	review.Status.UserInfo = authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups}
	s.writeReview(w, r, review)
}

// writeReview answers a review (JSON, YAML or protobuf; never a Table).
func (s *Server) writeReview(w http.ResponseWriter, r *http.Request, obj runtime.Object) {
	choice, ok := negotiate(r, func(string, string, string) bool { return false })
	if !ok {
		s.writeError(w, r, newNotAcceptable("only application/json, application/yaml and application/vnd.kubernetes.protobuf are served"))
		return
	}
	s.encode(w, http.StatusCreated, choice, obj)
}
