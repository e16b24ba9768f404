package job

import (
	"context"
	"fmt"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// TestCreatedPodsCountBeforeTheInformerShowsThem: a sync that runs before
// the informer has the pods the last one created does not create them
// again (the conformance run saw three pods of a Job with parallelism 2).
func TestCreatedPodsCountBeforeTheInformerShowsThem(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	n := 0
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		n++
		p.Name = fmt.Sprintf("%s%d", p.GenerateName, n)
		return false, nil, nil
	})
	stale := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	c := &Controller{client: cs, clock: clock.RealClock{}, pods: corelisters.NewPodLister(stale), created: map[types.UID]map[string]*corev1.Pod{}}
	sel := map[string]string{"batch.kubernetes.io/controller-uid": "u1"}
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "foo", Namespace: "ns", UID: "u1"}, Spec: batchv1.JobSpec{
		Parallelism: ptr.To(int32(2)), Completions: ptr.To(int32(4)), Selector: &metav1.LabelSelector{MatchLabels: sel},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever}}}}
	for sync := 0; sync < 3; sync++ {
		cnt, err := c.count(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.createPods(ctx, j, cnt); err != nil {
			t.Fatal(err)
		}
	}
	pods, _ := cs.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 2 {
		t.Fatalf("%d pods created for parallelism 2 while the informer lagged", len(pods.Items))
	}
	// Once the informer shows them, they are counted from it alone.
	for i := range pods.Items {
		_ = stale.Add(&pods.Items[i])
	}
	cnt, _ := c.count(ctx, j)
	if len(cnt.active) != 2 || len(c.created) != 0 {
		t.Fatalf("active %d, still remembered %v", len(cnt.active), c.created)
	}
}
