package apiserver

import (
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/petrel-project/petrel/controlplane/rbac"
)

// impersonate serves `kubectl --as` and `--as-group`: when the request
// carries Impersonate-User (and Impersonate-Group, Impersonate-Uid), the
// requesting user must hold the impersonate verb on each, and the request
// then goes on as the impersonated user. It returns the request to go on
// with, or false when it has answered.
func (s *Server) impersonate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	name := r.Header.Get(authenticationv1.ImpersonateUserHeader)
	groups := r.Header.Values(authenticationv1.ImpersonateGroupHeader)
	uid := r.Header.Get(authenticationv1.ImpersonateUIDHeader)
	extras := false
	for h := range r.Header {
		extras = extras || strings.HasPrefix(h, authenticationv1.ImpersonateUserExtraHeaderPrefix)
	}
	if name == "" {
		if len(groups) > 0 || uid != "" || extras {
			s.writeError(w, r, apierrors.NewBadRequest("impersonating groups, a UID or extra fields needs Impersonate-User as well"))
			return nil, false
		}
		return r, true
	}
	if extras {
		s.writeError(w, r, apierrors.NewBadRequest("Impersonate-Extra-* headers are not supported by Petrel"))
		return nil, false
	}
	u, ok := userFrom(r.Context())
	if !ok {
		s.writeError(w, r, apierrors.NewUnauthorized("impersonation needs an authenticated user"))
		return nil, false
	}
	allowed := func(a rbac.Attributes) bool {
		if s.cfg.Authorizer == nil || rbac.IsMaster(u.Groups) {
			return true
		}
		a.User, a.Groups, a.Verb, a.ResourceRequest = u.Name, u.Groups, "impersonate", true
		ok, _ := s.cfg.Authorizer.Authorize(a)
		return ok
	}
	asked := []rbac.Attributes{{Resource: "users", Name: name}}
	next := User{Name: name, UID: uid}
	if ns, sa, ok := serviceAccountOf(name); ok {
		asked[0] = rbac.Attributes{Resource: "serviceaccounts", Namespace: ns, Name: sa}
		if len(groups) == 0 {
			groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}
		}
	}
	for _, g := range groups {
		asked = append(asked, rbac.Attributes{Resource: "groups", Name: g})
	}
	if uid != "" {
		asked = append(asked, rbac.Attributes{APIGroup: "authentication.k8s.io", Resource: "uids", Name: uid})
	}
	for _, a := range asked {
		if !allowed(a) {
			a.User, a.Verb, a.ResourceRequest = u.Name, "impersonate", true
			s.writeError(w, r, forbidden(a, ""))
			return nil, false
		}
	}
	next.Groups = append(append([]string{}, groups...), "system:authenticated")
	return r.WithContext(WithUser(r.Context(), next)), true
}

// serviceAccountOf splits "system:serviceaccount:<ns>:<name>".
func serviceAccountOf(user string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	return namespace, name, ok && namespace != "" && name != ""
}
