package filters

import (
	"net/http/httptest"
	"testing"

	"github.com/petrel-project/petrel/controlplane/admission"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

func TestInflightLimitShedsPastItsPlaces(t *testing.T) {
	l := NewInflightLimit(1, 1, nil)
	req := func(method, target string, groups ...string) (func(), error) {
		r := httptest.NewRequest(method, target, nil)
		r = r.WithContext(admission.WithUser(r.Context(), admission.User{Name: "u", Groups: append(groups, "system:authenticated")}))
		return l.Admit(r)
	}
	doneRead, err := req("GET", "/api/v1/pods")
	if err != nil {
		t.Fatalf("first read: %v", err)
	}
	if _, err := req("GET", "/api/v1/namespaces/ns/configmaps/x"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second read while the only place is taken: want 429, got %v", err)
	}
	// Writes have their own places; watches, streams and system:masters none.
	doneWrite, err := req("POST", "/api/v1/namespaces/ns/configmaps")
	if err != nil {
		t.Fatalf("a write beside a read: %v", err)
	}
	if _, err := req("PATCH", "/api/v1/namespaces/ns/configmaps/x"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second write: want 429, got %v", err)
	}
	for _, target := range []string{"/api/v1/pods?watch=true", "/api/v1/watch/pods", "/api/v1/namespaces/ns/pods/p/log", "/api/v1/namespaces/ns/pods/p/exec"} {
		if _, err := req("GET", target); err != nil {
			t.Errorf("long-running %s shed: %v", target, err)
		}
	}
	if _, err := req("GET", "/api/v1/pods", "system:masters"); err != nil {
		t.Errorf("system:masters shed: %v", err)
	}
	doneRead()
	doneWrite()
	if _, err := req("GET", "/api/v1/pods"); err != nil {
		t.Fatalf("a read after the place came back: %v", err)
	}
}
