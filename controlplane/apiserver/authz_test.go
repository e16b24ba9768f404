package apiserver

import (
	"net/http/httptest"
	"testing"

	"github.com/petrel-project/petrel/controlplane/rbac"
)

func TestRequestAttributes(t *testing.T) {
	u := User{Name: "u", Groups: []string{"g"}}
	cases := []struct {
		method, target string
		want           rbac.Attributes
	}{
		{"GET", "/api/v1/namespaces/ns/pods", rbac.Attributes{Verb: "list", ResourceRequest: true, Resource: "pods", Namespace: "ns"}},
		{"GET", "/api/v1/namespaces/ns/pods?watch=true", rbac.Attributes{Verb: "watch", ResourceRequest: true, Resource: "pods", Namespace: "ns"}},
		{"GET", "/api/v1/namespaces/ns/pods/p/log", rbac.Attributes{Verb: "get", ResourceRequest: true, Resource: "pods", Subresource: "log", Namespace: "ns", Name: "p"}},
		{"GET", "/api/v1/namespaces/ns/pods/p/exec?command=sh", rbac.Attributes{Verb: "create", ResourceRequest: true, Resource: "pods", Subresource: "exec", Namespace: "ns", Name: "p"}},
		{"DELETE", "/apis/apps/v1/namespaces/ns/deployments", rbac.Attributes{Verb: "deletecollection", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Namespace: "ns"}},
		{"PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", rbac.Attributes{Verb: "patch", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Subresource: "scale", Namespace: "ns", Name: "d"}},
		{"GET", "/api/v1/namespaces/ns", rbac.Attributes{Verb: "get", ResourceRequest: true, Resource: "namespaces", Namespace: "ns", Name: "ns"}},
		{"PUT", "/api/v1/namespaces/ns/finalize", rbac.Attributes{Verb: "update", ResourceRequest: true, Resource: "namespaces", Subresource: "finalize", Namespace: "ns", Name: "ns"}},
		{"GET", "/api/v1/nodes", rbac.Attributes{Verb: "list", ResourceRequest: true, Resource: "nodes"}},
		{"POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", rbac.Attributes{Verb: "create", ResourceRequest: true, APIGroup: "authorization.k8s.io", Resource: "selfsubjectaccessreviews"}},
		{"GET", "/apis/apps/v1", rbac.Attributes{Verb: "get"}},
		{"GET", "/api", rbac.Attributes{Verb: "get"}},
		{"GET", "/openapi/v3", rbac.Attributes{Verb: "get"}},
		{"HEAD", "/healthz", rbac.Attributes{Verb: "get"}},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.target, nil)
		got := requestAttributes(r, u)
		want := c.want
		want.User, want.Groups, want.Path = "u", []string{"g"}, r.URL.Path
		if got.Verb != want.Verb || got.ResourceRequest != want.ResourceRequest || got.APIGroup != want.APIGroup ||
			got.Resource != want.Resource || got.Subresource != want.Subresource || got.Namespace != want.Namespace ||
			got.Name != want.Name || got.Path != want.Path || got.User != "u" {
			t.Errorf("%s %s: got %+v, want %+v", c.method, c.target, got, want)
		}
	}
	err := forbidden(rbac.Attributes{User: "system:serviceaccount:a:b", Verb: "list", ResourceRequest: true, Resource: "pods", Namespace: "a"}, "")
	if want := `pods is forbidden: User "system:serviceaccount:a:b" cannot list resource "pods" in API group "" in the namespace "a"`; err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}
}
