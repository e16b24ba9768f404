package kubelet

import (
	"context"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

func hostPortPod(name string, phase corev1.PodPhase, proto corev1.Protocol) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "web", Image: "petrel.local/testserver:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080, Protocol: proto}}}}},
		Status: corev1.PodStatus{Phase: phase}}
}

// testKubelet is a kubelet on node n1 with the given pods in its informer
// and the API, and no container runtime: its pod network fails.
func testKubelet(t *testing.T, pods ...*corev1.Pod) (*Kubelet, *fake.Clientset) {
	t.Helper()
	objs := make([]kruntime.Object, len(pods))
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{"uid": func(obj any) ([]string, error) {
		return []string{string(obj.(*corev1.Pod).UID)}, nil
	}})
	for i, p := range pods {
		objs[i] = p
		if err := idx.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	cs := fake.NewSimpleClientset(objs...)
	list, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.1.0","name":"none","plugins":[{"type":"petrel-cni-absent"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	k := &Kubelet{cfg: Config{NodeName: "n1", DataDir: t.TempDir(), CgroupRoot: "petrel-test"}, client: cs, pods: idx,
		recorder: record.NewFakeRecorder(100), state: map[string]*podState{},
		network: &network{cni: libcni.NewCNIConfig([]string{t.TempDir()}, nil), list: list},
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	t.Cleanup(k.queue.ShutDown)
	return k, cs
}

// TestSecondHostPortPodRefused: a pod asking for a host port that a pod
// admitted on this node holds fails admission on the node, as the kubelet
// refuses it, instead of running beside the first.
func TestSecondHostPortPodRefused(t *testing.T) {
	first := hostPortPod("first", corev1.PodRunning, corev1.ProtocolTCP)
	second := hostPortPod("second", corev1.PodPending, corev1.ProtocolTCP)
	udp := hostPortPod("udp", corev1.PodPending, corev1.ProtocolUDP)
	k, cs := testKubelet(t, first, second, udp)
	ctx := context.Background()
	_, _ = k.sync(ctx, string(second.UID))
	_, _ = k.sync(ctx, string(udp.UID))
	got, err := cs.CoreV1().Pods("default").Get(ctx, "second", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodFailed || got.Status.Reason != "NodePorts" || !strings.Contains(got.Status.Message, "free ports") {
		t.Fatalf("second pod's status %+v, want Failed by the node's admission (NodePorts)", got.Status)
	}
	if p, _ := cs.CoreV1().Pods("default").Get(ctx, "udp", metav1.GetOptions{}); p.Status.Phase == corev1.PodFailed {
		t.Fatalf("the pod on the same port over UDP was refused: %+v", p.Status)
	}
	if p, _ := cs.CoreV1().Pods("default").Get(ctx, "first", metav1.GetOptions{}); p.Status.Phase != corev1.PodRunning {
		t.Fatalf("the first pod was touched: %+v", p.Status)
	}
}
