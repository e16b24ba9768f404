package customresource

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/utils/ptr"
)

func widgetDefinition() *apiextensionsv1.CustomResourceDefinition {
	str := func(desc string) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "string", Description: desc}
	}
	size := str("How big.")
	size.Enum = []apiextensionsv1.JSON{{Raw: []byte(`"small"`)}, {Raw: []byte(`"large"`)}}
	color := str("")
	color.Default = &apiextensionsv1.JSON{Raw: []byte(`"blue"`)}
	color.XValidations = apiextensionsv1.ValidationRules{{Rule: "self == oldSelf", Message: "color is immutable"}}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.example.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "example.com", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{},
					Scale: &apiextensionsv1.CustomResourceSubresourceScale{SpecReplicasPath: ".spec.replicas", StatusReplicasPath: ".status.replicas"}},
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{{Name: "Size", Type: "string", JSONPath: ".spec.size"}},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"size": size, "color": color, "replicas": {Type: "integer", Minimum: ptr.To(0.0)},
						}, XValidations: apiextensionsv1.ValidationRules{{Rule: "!has(self.replicas) || self.replicas <= 10", Message: "at most 10 replicas"}}},
						"status": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"replicas": {Type: "integer"}}},
					},
				}},
			}},
		},
	}
}

// TestStrategy: the strategy built from a definition prunes, defaults and
// validates by its schema, prints its columns, scales through its paths and
// gives server-side apply a schema-aware type converter.
func TestStrategy(t *testing.T) {
	res, err := NewResource(widgetDefinition(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	u := res.New().(*unstructured.Unstructured)
	u.SetName("w")
	u.Object["spec"] = map[string]interface{}{"size": "huge", "replicas": int64(2), "unknown": "x"}
	u.Object["status"] = map[string]interface{}{"replicas": int64(1)}
	if got := res.UnknownFields(u); len(got) != 1 || got[0] != "spec.unknown" {
		t.Fatalf("unknown fields %q, want spec.unknown", got)
	}
	res.Default(u)
	if _, found := u.Object["spec"].(map[string]interface{})["unknown"]; found {
		t.Fatal("unknown field not pruned")
	}
	if c, _, _ := unstructured.NestedString(u.Object, "spec", "color"); c != "blue" {
		t.Fatalf("color %q, want the default blue", c)
	}
	errs := res.Validate(u)
	if len(errs) != 1 || errs[0].Field != "spec.size" {
		t.Fatalf("validation: %v, want one error on spec.size", errs)
	}
	if got := res.Columns[0].Cell(u); got != "huge" {
		t.Fatalf("Size cell %v", got)
	}
	spec, status, _ := res.Scale.Get(u)
	res.Scale.Set(u, 5)
	if spec != 2 || status != 1 || u.Object["spec"].(map[string]interface{})["replicas"] != int64(5) {
		t.Fatalf("scale: %d %d %v", spec, status, u.Object["spec"])
	}
	// CEL: a rule on the object, and a transition rule (oldSelf) on update.
	u.Object["spec"].(map[string]interface{})["size"] = "small"
	u.Object["spec"].(map[string]interface{})["replicas"] = int64(11)
	if errs := res.Validate(u); len(errs) != 1 || errs[0].Field != "spec" || !strings.Contains(errs[0].Error(), "at most 10 replicas") {
		t.Fatalf("CEL rule: %v", errs)
	}
	u.Object["spec"].(map[string]interface{})["replicas"] = int64(1)
	if errs := res.Validate(u); len(errs) != 0 {
		t.Fatalf("valid widget: %v", errs)
	}
	old := u.DeepCopy()
	u.Object["spec"].(map[string]interface{})["color"] = "red"
	if errs := res.ValidateUpdate(u, old); len(errs) != 1 || errs[0].Field != "spec.color" || !strings.Contains(errs[0].Error(), "color is immutable") {
		t.Fatalf("transition rule: %v", errs)
	}
	if errs := res.ValidateUpdate(old.DeepCopy(), old); len(errs) != 0 {
		t.Fatalf("unchanged update: %v", errs)
	}
	if _, err := res.Custom.TypeConverter.ObjectToTyped(u); err != nil {
		t.Fatalf("type converter: %v", err)
	}
	if _, deduced := res.Custom.TypeConverter.(interface{ Deduced() }); deduced {
		t.Fatal("deduced type converter")
	}
	_ = managedfields.NewDeducedTypeConverter
}

// The published OpenAPI v2 keeps the schema's validation (enum, minimum,
// required), as kube-apiserver publishes it: kubectl and the conformance
// suite compare it with the CRD's.
func TestOpenAPIV2KeepsValidation(t *testing.T) {
	crd := widgetDefinition()
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	spec.Required = []string{"size"}
	crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = spec
	s, err := openAPI(crd, "v1")
	if err != nil {
		t.Fatal(err)
	}
	def, ok := s.OpenAPIV2.Definitions["com.example.v1.Widget"]
	if !ok {
		t.Fatalf("no definition com.example.v1.Widget in %v", s.OpenAPIV2.Definitions)
	}
	sp := def.Properties["spec"]
	if len(sp.Required) != 1 || sp.Required[0] != "size" {
		t.Errorf("spec.required %v, want [size]", sp.Required)
	}
	if len(sp.Properties["size"].Enum) != 2 {
		t.Errorf("spec.size.enum %v, want small and large", sp.Properties["size"].Enum)
	}
	if m := sp.Properties["replicas"].Minimum; m == nil || *m != 0 {
		t.Errorf("spec.replicas.minimum %v, want 0", m)
	}
}

// Moving the storage version to a new version is valid: the update adds it
// to status.storedVersions, which validation requires.
func TestStorageVersionChangeJoinsStoredVersions(t *testing.T) {
	res := DefinitionResource()
	old := widgetDefinition()
	old.ResourceVersion = "7"
	res.Default(old)
	res.PrepareForCreate(old)
	if got := old.Status.StoredVersions; len(got) != 1 || got[0] != "v1" {
		t.Fatalf("storedVersions on create %v, want [v1]", got)
	}
	upd := old.DeepCopy()
	v2 := upd.Spec.Versions[0]
	v2.Name = "v2"
	upd.Spec.Versions[0].Storage = false
	upd.Spec.Versions = append(upd.Spec.Versions, v2)
	res.PrepareForUpdate("", upd, old)
	if got := upd.Status.StoredVersions; len(got) != 2 || got[1] != "v2" {
		t.Fatalf("storedVersions after the update %v, want [v1 v2]", got)
	}
	if errs := res.ValidateUpdate(upd, old); len(errs) != 0 {
		t.Fatalf("a change of storage version refused: %v", errs)
	}
}
