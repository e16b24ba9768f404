package apiserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// TestNotFoundPaths: every path the server does not serve is answered as
// Kubernetes answers it: 404, reason NotFound, "the server could not find
// the requested resource" and empty details (it once said
// ` "apis/autoscaling/v2" not found`, the path as an object's name).
// Objects that are not there are the storage's NotFound (e2e).
func TestNotFoundPaths(t *testing.T) {
	resources := registry.All(registry.Config{})
	reg := generic.NewRegistry()
	for _, r := range resources {
		reg.Add(r, nil) // never reached: these paths end before storage
	}
	s, err := New(Config{Resources: resources, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/apis/autoscaling/v3",
		"/apis/autoscaling/v2/horizontalpodautoscalerz",
		"/apis/nope.example.com",
		"/apis/nope.example.com/v1/things",
		"/api/v2",
		"/api/v1/bogus",
		"/api/v1/pods/p",                                 // namespaced, named, without a namespace
		"/api/v1/namespaces/default/configmaps/c/status", // a kind without status
		"/api/v1/namespaces/default/configmaps/c/scale",  // or scale
		"/api/v1/namespaces/default/pods/p/bogus",        // an unknown subresource
		"/api/v1/namespaces/default/configmaps/c/log",    // a pod's subresource elsewhere
		"/apis/apps/v1/namespaces/default/deployments/d/scale/more",
		"/nothing/here",
	} {
		t.Run(path, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("Accept", "application/json")
			rec := httptest.NewRecorder()
			s.mux.ServeHTTP(rec, req)
			var st metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
				t.Fatalf("%d, not a Status: %v: %s", rec.Code, err, rec.Body)
			}
			if rec.Code != http.StatusNotFound || st.Code != http.StatusNotFound || st.Kind != "Status" || st.Status != metav1.StatusFailure {
				t.Fatalf("got %d: %s", rec.Code, rec.Body)
			}
			if st.Reason != metav1.StatusReasonNotFound || st.Message != "the server could not find the requested resource" {
				t.Fatalf("reason %q, message %q; want NotFound, %q", st.Reason, st.Message, "the server could not find the requested resource")
			}
			if d := st.Details; d == nil || d.Name != "" || d.Group != "" || d.Kind != "" || d.UID != "" || len(d.Causes) != 0 {
				t.Fatalf("details %+v, want present and empty: %s", st.Details, rec.Body)
			}
		})
	}
}
