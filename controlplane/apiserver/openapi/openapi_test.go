package openapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/petrel-project/petrel/controlplane/apiserver"
	petrelopenapi "github.com/petrel-project/petrel/controlplane/apiserver/openapi"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	"k8s.io/kubectl/pkg/util/openapi"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// TestOpenAPIV2Protobuf: kubectl reads the v2 document in protobuf to
// validate kinds it cannot check through v3 (the reviews). A v3-only
// schema shape (Quantity's oneOf) once made that a 503, and a reference
// to a type outside the generated packages made kubectl's parser reject
// the whole document; every served kind must be found in it.
func TestOpenAPIV2Protobuf(t *testing.T) {
	resources := append(registry.All(registry.Config{}), registry.Reviews()...)
	oa, err := petrelopenapi.Build(apiserver.Scheme, resources)
	if err != nil {
		t.Fatal(err)
	}
	get := func(accept string) []byte {
		req := httptest.NewRequest(http.MethodGet, "/openapi/v2", nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		oa.ServeV2(rec, req)
		if rec.Code != http.StatusOK || rec.Body.Len() < 100000 {
			t.Fatalf("%s: %d, %d bytes: %.200s", accept, rec.Code, rec.Body.Len(), rec.Body.String())
		}
		return rec.Body.Bytes()
	}
	if !strings.Contains(string(get("application/json")), `"/apis/authorization.k8s.io/v1/subjectaccessreviews":{"post"`) {
		t.Fatal("the reviews' create paths are missing from OpenAPI v2")
	}
	doc := &openapi_v2.Document{}
	if err := proto.Unmarshal(get("application/com.github.proto-openapi.spec.v2@v1.0+protobuf"), doc); err != nil {
		t.Fatal(err)
	}
	models, err := openapi.NewOpenAPIData(doc)
	if err != nil {
		t.Fatalf("kubectl cannot read the v2 document: %v", err)
	}
	for _, r := range resources {
		if models.LookupResource(r.GVK()) == nil {
			t.Errorf("kubectl finds no schema for %s", r.GVK())
		}
	}
}
