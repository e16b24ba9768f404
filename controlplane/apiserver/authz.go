package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/rbac"
)

// authorize lets the request on when the authorizer allows it and answers
// 403 Forbidden (with Kubernetes' wording) when it does not.
// attrs, when not nil, are the request's attributes as an earlier filter
// (priority and fairness) read them, so that they are read once.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, attrs *rbac.Attributes) bool {
	if s.cfg.Authorizer == nil {
		return true
	}
	u, ok := userFrom(r.Context())
	if !ok {
		// Only the anonymous paths (health, version) get here without a user.
		return true
	}
	if rbac.IsMaster(u.Groups) {
		return true
	}
	if attrs == nil {
		a := requestAttributes(r, u)
		attrs = &a
	}
	allowed, reason := s.allowed(*attrs)
	if allowed {
		return true
	}
	s.writeError(w, r, forbidden(*attrs, reason))
	return false
}

// forbidden is the 403 Kubernetes answers, naming the user, verb and
// resource (or path), so that the user knows which permission to ask for.
func forbidden(a rbac.Attributes, reason string) error {
	var msg string
	switch {
	case !a.ResourceRequest:
		msg = fmt.Sprintf("User %q cannot %s path %q", a.User, a.Verb, a.Path)
	default:
		resource := a.Resource
		if a.Subresource != "" {
			resource += "/" + a.Subresource
		}
		if a.Namespace != "" {
			msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", a.User, a.Verb, resource, a.APIGroup, a.Namespace)
		} else {
			msg = fmt.Sprintf("User %q cannot %s resource %q in API group %q at the cluster scope", a.User, a.Verb, resource, a.APIGroup)
		}
	}
	if reason != "" {
		msg += ": " + reason
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: a.APIGroup, Resource: a.Resource}, a.Name, errors.New(msg))
}

// streamingSubresources open a connection into a container: Kubernetes
// asks for create on them whatever the HTTP method (a WebSocket upgrade is
// a GET).
var streamingSubresources = map[string]bool{"exec": true, "attach": true, "portforward": true}

// requestAttributes reads what a request asks for from its path, method
// and query, as Kubernetes' request info does.
func requestAttributes(r *http.Request, u User) rbac.Attributes {
	a := rbac.Attributes{User: u.Name, Groups: u.Groups, Path: r.URL.Path}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var rest []string
	switch {
	case parts[0] == "api" && len(parts) >= 3:
		rest = parts[2:]
	case parts[0] == "apis" && len(parts) >= 4:
		a.APIGroup, rest = parts[1], parts[3:]
	default:
		a.Verb = strings.ToLower(r.Method)
		if r.Method == http.MethodHead {
			a.Verb = "get"
		}
		return a
	}
	a.ResourceRequest = true
	if rest[0] == "namespaces" && len(rest) > 1 {
		a.Namespace = rest[1]
		if len(rest) > 2 && rest[2] != "status" && rest[2] != "finalize" {
			rest = rest[2:]
		}
	}
	a.Resource = rest[0]
	if len(rest) > 1 {
		a.Name = rest[1]
	}
	if len(rest) > 2 {
		a.Subresource = rest[2]
	}
	a.Verb = verbFor(r.Method, a.Name != "", isTrue(r.URL.Query().Get("watch")))
	if a.Verb == "list" || a.Verb == "watch" {
		a.FieldSelector = r.URL.Query().Get("fieldSelector")
	}
	if a.Resource == "pods" && streamingSubresources[a.Subresource] {
		a.Verb = "create"
	}
	return a
}
