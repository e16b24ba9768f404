package server

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"

	"github.com/petrel-project/petrel/controlplane/apiserver"
)

// storedPod is a small Pod as the Pod codec stores it.
func storedPod(tb testing.TB) (*protobuf.Serializer, storageCodec, []byte) {
	pb := protobuf.NewSerializer(apiserver.Scheme, apiserver.Scheme)
	codec := newStorageCodec(corev1.SchemeGroupVersion.WithKind("Pod"), pb)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "a"}, UID: "u"},
		Spec: corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "c", Image: "img",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}}
	data, err := codec.Encode(pod)
	if err != nil {
		tb.Fatal(err)
	}
	return pb, codec, data
}

func TestStorageCodecDecodesInPlaceAsTheSerializer(t *testing.T) {
	pb, codec, data := storedPod(t)
	if _, ok := codec.payload(data); !ok {
		t.Fatal("a value the codec wrote is not read in place")
	}
	got, err := codec.Decode(data, &corev1.Pod{Status: corev1.PodStatus{Phase: "stale"}})
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := pb.Decode(data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("in place:\n%#v\nserializer:\n%#v", got, want)
	}
	if got.(*corev1.Pod).Status.Phase != "" {
		t.Error("the target's old content survived the decode")
	}

	// Another kind's value, and damaged values, go the serializer's way and
	// fail there as before.
	cm := newStorageCodec(corev1.SchemeGroupVersion.WithKind("ConfigMap"), pb)
	if _, ok := cm.payload(data); ok {
		t.Error("a Pod's value read as a ConfigMap's")
	}
	for name, bad := range map[string][]byte{
		"no magic":        data[4:],
		"cut short":       data[:len(data)-3],
		"json, not proto": []byte(`{"kind":"Pod"}`),
	} {
		if _, ok := codec.payload(bad); ok {
			t.Errorf("%s: read in place", name)
		}
		if _, err := codec.Decode(bad, &corev1.Pod{}); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// BenchmarkStorageCodecDecode is the decode of every watch event and read;
// the serializer's path is measured beside it.
func BenchmarkStorageCodecDecode(b *testing.B) {
	pb, codec, data := storedPod(b)
	gvk := codec.gvk
	b.Run("in-place", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.Decode(data, &corev1.Pod{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("serializer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := pb.Decode(data, &gvk, &corev1.Pod{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
