package e2e

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/cluster"
)

// manyObjects is more than a reflector's first page (500), three times over.
const manyObjects = 1500

// createMany creates n objects with create(i) from a few workers.
func createMany(t *testing.T, n int, create func(ctx context.Context, i int) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := create(ctx, i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// createServicesWithSlices creates n selectorless Services in ns, each with an
// EndpointSlice of one ready backend at 127.0.0.1:port.
func createServicesWithSlices(t *testing.T, cs kubernetes.Interface, ns string, n int, port int32) {
	t.Helper()
	createMany(t, n, func(ctx context.Context, i int) error {
		name := fmt.Sprintf("many-%04d", i)
		if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		_, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("endpointslice %s: %w", name, err)
		}
		return nil
	})
}

// TestInformersSeeEveryObject starts informers after more objects exist than
// fit in a reflector's first page. Their first list is resourceVersion=0 with
// limit=500; it once came back with 500 items and no continue token, so
// kube-proxy (and Petrel's own node) saw a third of the Services.
func TestInformersSeeEveryObject(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	ns := "paging"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createServicesWithSlices(t, cs, ns, manyObjects, 8080)
	createMany(t, manyObjects, func(ctx context.Context, i int) error {
		// Another scheduler's pods stay pending without keeping ours busy.
		_, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("many-%04d", i)},
			Spec: corev1.PodSpec{SchedulerName: "elsewhere", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
		return err
	})

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	counted := map[string]cache.SharedIndexInformer{
		"services":       factory.Core().V1().Services().Informer(),
		"endpointslices": factory.Discovery().V1().EndpointSlices().Informer(),
		"pods":           factory.Core().V1().Pods().Informer(),
	}
	factory.Start(ctx.Done())
	// Shutdown waits for the informers, which stop when ctx ends: ended
	// first, not after the test's five minutes.
	defer func() {
		cancel()
		factory.Shutdown()
	}()
	for what, inf := range counted {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			t.Fatalf("%s informer did not sync", what)
		}
		if got := len(inf.GetStore().List()); got != manyObjects {
			t.Errorf("%s informer holds %d of %d", what, got, manyObjects)
		}
	}

	// Every list with a limit returns everything, or a page and a continue token
	// that leads to the rest, whatever resourceVersion it names.
	list, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []url.Values{
		{"limit": {"500"}},
		{"limit": {"500"}, "resourceVersion": {"0"}},
		{"limit": {"500"}, "resourceVersion": {list.ResourceVersion}},
		{"limit": {"500"}, "resourceVersion": {list.ResourceVersion}, "resourceVersionMatch": {"NotOlderThan"}},
		{"limit": {"500"}, "resourceVersion": {list.ResourceVersion}, "resourceVersionMatch": {"Exact"}},
	} {
		seen := map[string]bool{}
		opts := metav1.ListOptions{}
		if err := metav1.Convert_url_Values_To_v1_ListOptions(&q, &opts, nil); err != nil {
			t.Fatal(err)
		}
		for page := 0; ; page++ {
			if page > manyObjects/500+1 {
				t.Fatalf("%v: more pages than there are items", q)
			}
			l, err := cs.CoreV1().Services(ns).List(ctx, opts)
			if err != nil {
				t.Fatalf("%v: %v", q, err)
			}
			for _, svc := range l.Items {
				seen[svc.Name] = true
			}
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
			opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
		}
		if len(seen) != manyObjects {
			t.Errorf("list %v: %d of %d services", q, len(seen), manyObjects)
		}
	}
}
