package customresource

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// renamer converts as the e2e test's webhook does: v1 spec.color, v2
// spec.colour; it counts its calls.
type renamer struct{ calls int }

func (r *renamer) Convert(in, out, context interface{}) error { panic("not used") }
func (r *renamer) ConvertFieldLabel(gvk schema.GroupVersionKind, label, value string) (string, string, error) {
	return label, value, nil
}
func (r *renamer) ConvertToVersion(in runtime.Object, gv runtime.GroupVersioner) (runtime.Object, error) {
	r.calls++
	u := in.(*unstructured.Unstructured).DeepCopy()
	to := gv.(schema.GroupVersion)
	from, dst := "colour", "color"
	if to.Version == "v2" {
		from, dst = "color", "colour"
	}
	if v, ok, _ := unstructured.NestedString(u.Object, "spec", from); ok {
		unstructured.RemoveNestedField(u.Object, "spec", from)
		_ = unstructured.SetNestedField(u.Object, v, "spec", dst)
	}
	u.SetAPIVersion(to.String())
	return u, nil
}

func TestJSONCodecConvertsThroughTheStorageVersion(t *testing.T) {
	conv := &renamer{}
	v1 := schema.GroupVersion{Group: "example.com", Version: "v1"}
	v2 := jsonCodec{gvk: schema.GroupVersionKind{Group: "example.com", Version: "v2", Kind: "Thing"}, conv: conv, storage: v1}
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v2", "kind": "Thing", "spec": map[string]any{"colour": "red"}}}
	data, err := v2.Encode(obj)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"apiVersion":"example.com/v1","kind":"Thing","spec":{"color":"red"}}` {
		t.Fatalf("stored %s", data)
	}
	back, err := v2.Decode(data, &unstructured.Unstructured{})
	if err != nil {
		t.Fatal(err)
	}
	if c, _, _ := unstructured.NestedString(back.(*unstructured.Unstructured).Object, "spec", "colour"); c != "red" || back.GetObjectKind().GroupVersionKind().Version != "v2" {
		t.Fatalf("read back %v", back)
	}
	// The storage version's own codec reads without a call.
	calls := conv.calls
	v1codec := jsonCodec{gvk: v1.WithKind("Thing"), conv: conv, storage: v1}
	if _, err := v1codec.Decode(data, &unstructured.Unstructured{}); err != nil || conv.calls != calls {
		t.Fatalf("storage version read: %v, %d calls", err, conv.calls-calls)
	}
	// None conversion: only apiVersion changes.
	none := jsonCodec{gvk: v2.gvk}
	got, _ := none.Decode(data, &unstructured.Unstructured{})
	if c, _, _ := unstructured.NestedString(got.(*unstructured.Unstructured).Object, "spec", "color"); c != "red" || got.GetObjectKind().GroupVersionKind().Version != "v2" {
		t.Fatalf("None conversion read %v", got)
	}
}
