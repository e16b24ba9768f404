package apiserver

import (
	"context"
	"net/http"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// selfSubjectAccessReview answers `kubectl auth can-i`: yes, for now.
func (s *Server) selfSubjectAccessReview(w http.ResponseWriter, r *http.Request) {
	review := &authorizationv1.SelfSubjectAccessReview{}
	s.serveReview(w, r, review, authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectAccessReview"), func() error {
		review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: noRBAC}
		return nil
	})
}

// selfSubjectRulesReview answers `kubectl auth can-i --list`: everything.
func (s *Server) selfSubjectRulesReview(w http.ResponseWriter, r *http.Request) {
	review := &authorizationv1.SelfSubjectRulesReview{}
	s.serveReview(w, r, review, authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectRulesReview"), func() error {
		review.Status = authorizationv1.SubjectRulesReviewStatus{
			ResourceRules:    []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}},
			NonResourceRules: []authorizationv1.NonResourceRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
		}
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
