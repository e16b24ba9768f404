package liststream

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// The streamed protobuf list is byte for byte what the serializer writes for
// the whole list, so every protobuf client decodes it as before.
func TestProtoListMatchesSerializer(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 3, 700} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var items []runtime.Object
			var pods []corev1.Pod
			for i := range n {
				p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: "ns", ResourceVersion: fmt.Sprint(100 + i),
					Labels: map[string]string{"app": "x"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
				pods = append(pods, p)
				items = append(items, &pods[i])
			}
			result := &generic.ListResult{Items: items, ItemProto: func(i int) ([]byte, error) { return ProtoMessage(items[i]) }}
			list := &corev1.PodList{}
			list.GetObjectKind().SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
			list.ResourceVersion, list.Continue, list.RemainingItemCount = "123", "next", ptr.To(int64(7))
			rec := httptest.NewRecorder()
			if err := Protobuf(rec, list, result); err != nil {
				t.Fatal(err)
			}

			want := list.DeepCopy()
			want.Items = pods
			var buf bytes.Buffer
			if err := protobuf.NewSerializer(scheme, scheme).Encode(want, &buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rec.Body.Bytes(), buf.Bytes()) {
				t.Fatalf("streamed list (%d bytes) differs from the serializer's (%d bytes)", rec.Body.Len(), buf.Len())
			}
			if ct := rec.Header().Get("Content-Type"); ct != ProtobufContentType {
				t.Fatalf("content type %q", ct)
			}
		})
	}
}
