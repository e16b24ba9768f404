package apiserver

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

var fuzzContentTypes = []string{"application/json", "application/yaml", runtime.ContentTypeProtobuf}

func samplePod() *corev1.Pod {
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox",
			Ports: []corev1.ContainerPort{{ContainerPort: 80}}, Env: []corev1.EnvVar{{Name: "A", Value: "1"}}}}}}
}

// FuzzDecodeBody: a request body in any of the served encodings decodes to
// an object or an error, never a panic, strict or not; what decodes encodes
// again as JSON.
func FuzzDecodeBody(f *testing.F) {
	pod := samplePod()
	for i, ct := range fuzzContentTypes {
		info, _ := runtime.SerializerInfoForMediaType(mediaTypes, ct)
		var buf bytes.Buffer
		if err := info.Serializer.Encode(pod, &buf); err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), false, buf.Bytes())
		f.Add(uint8(i), true, buf.Bytes())
	}
	f.Add(uint8(0), true, []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","name":"b"}}`))
	f.Add(uint8(1), false, []byte("a: &a [*a, *a]\nb: *a\n"))
	f.Fuzz(func(t *testing.T, ct uint8, strict bool, body []byte) {
		dec, _, err := decoderFor(fuzzContentTypes[int(ct)%len(fuzzContentTypes)], strict)
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := dec.Decode(body, nil, &corev1.Pod{})
		if err != nil || obj == nil {
			return
		}
		var buf bytes.Buffer
		if err := jsonInfo.Serializer.Encode(obj, &buf); err != nil {
			t.Fatalf("decoded %T does not encode: %v", obj, err)
		}
	})
}

// FuzzApplyPatch: JSON, merge and strategic merge patches applied to a pod
// give a JSON document within the size limit, or an error; never a panic.
func FuzzApplyPatch(f *testing.F) {
	doc, err := json.Marshal(samplePod())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), []byte(`[{"op":"add","path":"/metadata/labels/x","value":"y"},{"op":"copy","from":"/spec","path":"/metadata/annotations"}]`))
	f.Add(uint8(0), []byte(`[{"op":"move","from":"/spec/containers/0","path":"/spec/containers/-"}]`))
	f.Add(uint8(1), []byte(`{"metadata":{"labels":{"app":null,"b":"c"}}}`))
	f.Add(uint8(2), []byte(`{"spec":{"containers":[{"name":"c","image":"nginx"},{"$patch":"delete","name":"x"}]}}`))
	f.Add(uint8(2), []byte(`{"spec":{"$setElementOrder/containers":[{"name":"c"}],"containers":[{"name":"c","env":[{"name":"A","$patch":"delete"}]}]}}`))
	pts := []types.PatchType{types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType}
	f.Fuzz(func(t *testing.T, pt uint8, patch []byte) {
		out, err := applyPatch(pts[int(pt)%len(pts)], doc, patch, &corev1.Pod{})
		if err != nil {
			return
		}
		if len(out) > MaxPatchedObjectBytes {
			t.Fatalf("patched object of %d bytes passed the limit", len(out))
		}
		if !json.Valid(out) {
			t.Fatalf("patched object is not JSON: %q", out)
		}
	})
}

// FuzzRequestAttributes: any path, method and query parse into the
// attributes authorization and audit see, without a panic; a resource
// request always names its resource.
func FuzzRequestAttributes(f *testing.F) {
	for _, p := range []string{"/api/v1/namespaces/default/pods/p/log", "/apis/apps/v1/deployments", "/api/v1/namespaces/x", "/apis/a/b/namespaces/c/d/e/f", "/healthz", "/api", "/apis/g"} {
		f.Add("GET", p, "watch=true&fieldSelector=spec.nodeName%3Dn")
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		if path == "" || path[0] != '/' {
			path = "/" + path
		}
		r := httptest.NewRequest("GET", "https://h/", nil)
		r.Method, r.URL.Path, r.URL.RawQuery = method, path, query
		a := requestAttributes(r, User{Name: "u"})
		if a.ResourceRequest && a.Verb == "" {
			t.Fatalf("%s %s: a resource request without a verb: %+v", method, path, a)
		}
		_ = apiVersionOf(path)
	})
}
