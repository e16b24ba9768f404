package apiserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// TestOpenAPIV2Protobuf: kubectl asks for the v2 document in protobuf when
// it validates a kind it cannot check through v3; a v3-only schema shape
// (Quantity's oneOf) once made that a 503.
func TestOpenAPIV2Protobuf(t *testing.T) {
	oa, err := buildOpenAPI(append(registry.All(registry.Config{}), registry.Reviews()...))
	if err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{"application/json", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"} {
		req := httptest.NewRequest(http.MethodGet, "/openapi/v2", nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		oa.v2Handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Body.Len() < 100000 {
			t.Fatalf("%s: %d, %d bytes: %.200s", accept, rec.Code, rec.Body.Len(), rec.Body.String())
		}
		if accept == "application/json" && !strings.Contains(rec.Body.String(), `"/apis/authorization.k8s.io/v1/subjectaccessreviews":{"post"`) {
			t.Fatal("the reviews' create paths are missing from OpenAPI v2")
		}
	}
}
