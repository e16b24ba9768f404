package endpointslice

import (
	"context"
	"fmt"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func pod(name, ip string, ready bool, lbls map[string]string) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: lbls, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

func TestDesiredSlices(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")},
			{Name: "metrics", Port: 9090, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9090)}}}}
	lbls := map[string]string{"app": "web"}
	deleting := pod("c", "10.244.0.4", true, lbls)
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	noPort := pod("d", "10.244.0.5", true, lbls)
	noPort.Spec.Containers[0].Ports = nil
	done := pod("e", "10.244.0.6", false, lbls)
	done.Status.Phase = corev1.PodSucceeded
	sts := pod("f", "10.244.0.7", true, lbls)
	sts.Spec.Hostname, sts.Spec.Subdomain = "f-0", "web"
	got := desiredSlices(svc, []*corev1.Pod{pod("b", "10.244.0.3", false, lbls), pod("a", "10.244.0.2", true, lbls), deleting, noPort, done,
		pod("x", "", true, lbls), sts})

	if len(got) != 2 {
		t.Fatalf("%d port groups, want 2 (named port resolved, and missing): %v", len(got), got)
	}
	var full, partial []sliceContent
	for _, g := range got {
		if len(g[0].ports) == 2 {
			full = g
		} else {
			partial = g
		}
	}
	if len(full) != 1 || len(full[0].endpoints) != 4 {
		t.Fatalf("full group = %+v", full)
	}
	if *full[0].ports[0].Port != 8080 {
		t.Errorf("named target port resolved to %d, want 8080", *full[0].ports[0].Port)
	}
	conds := map[string]discoveryv1.EndpointConditions{}
	for _, ep := range full[0].endpoints {
		conds[ep.Addresses[0]] = ep.Conditions
	}
	check := func(ip string, ready, serving, terminating bool) {
		t.Helper()
		c := conds[ip]
		if ptr.Deref(c.Ready, !ready) != ready || ptr.Deref(c.Serving, !serving) != serving || ptr.Deref(c.Terminating, !terminating) != terminating {
			t.Errorf("%s conditions = ready %v serving %v terminating %v", ip, *c.Ready, *c.Serving, *c.Terminating)
		}
	}
	check("10.244.0.2", true, true, false)
	check("10.244.0.3", false, false, false)
	check("10.244.0.4", false, true, true)
	if full[0].endpoints[0].Addresses[0] != "10.244.0.2" {
		t.Errorf("endpoints not sorted: %v", full[0].endpoints)
	}
	if h := full[0].endpoints[3].Hostname; h == nil || *h != "f-0" {
		t.Errorf("hostname of the subdomain pod = %v", h)
	}
	if len(partial) != 1 || len(partial[0].ports) != 1 || *partial[0].ports[0].Port != 9090 {
		t.Errorf("pod without the named port: %+v", partial)
	}

	var many []*corev1.Pod
	for i := range 250 {
		many = append(many, pod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.244.%d.%d", i/200, i%200+1), true, lbls))
	}
	for _, g := range desiredSlices(svc, many) {
		if len(g) != 3 || len(g[0].endpoints) != 100 || len(g[2].endpoints) != 50 {
			t.Errorf("250 endpoints split as %d slices", len(g))
		}
	}
}

func TestControllerWritesSlicesAndEndpoints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lbls := map[string]string{"app": "web"}
	cs := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "svc-uid"},
			Spec: corev1.ServiceSpec{Selector: lbls, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}}}},
		pod("a", "10.244.0.2", true, lbls), pod("b", "10.244.0.3", false, lbls),
		pod("other", "10.244.0.9", true, map[string]string{"app": "db"}),
	)
	factory := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, factory)
	factory.Start(ctx.Done())
	go c.Run(ctx, 2)

	waitFor := func(what string, f func() error) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := f()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	slices := func() ([]discoveryv1.EndpointSlice, error) {
		l, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
		if err != nil {
			return nil, err
		}
		return l.Items, nil
	}
	waitFor("a slice with both pods", func() error {
		items, err := slices()
		if err != nil {
			return err
		}
		if len(items) != 1 || len(items[0].Endpoints) != 2 {
			return fmt.Errorf("slices = %+v", items)
		}
		s := items[0]
		if s.Labels[discoveryv1.LabelManagedBy] != ManagedBy || s.Annotations[corev1.EndpointsLastChangeTriggerTime] == "" ||
			len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "svc-uid" || *s.Ports[0].Port != 8080 {
			return fmt.Errorf("slice metadata = %+v", s.ObjectMeta)
		}
		return nil
	})
	waitFor("legacy Endpoints", func() error {
		ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || len(ep.Subsets[0].NotReadyAddresses) != 1 {
			return fmt.Errorf("subsets = %+v", ep.Subsets)
		}
		return nil
	})

	// The not-ready pod turns ready: the slice follows.
	b, _ := cs.CoreV1().Pods("default").Get(ctx, "b", metav1.GetOptions{})
	b.Status.Conditions[0].Status = corev1.ConditionTrue
	b.ResourceVersion = "2"
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("pod b ready in the slice", func() error {
		items, err := slices()
		if err != nil {
			return err
		}
		for _, ep := range items[0].Endpoints {
			if !*ep.Conditions.Ready {
				return fmt.Errorf("%s still not ready", ep.Addresses[0])
			}
		}
		return nil
	})

	// Relabelled out of the selector: gone from the slice.
	a, _ := cs.CoreV1().Pods("default").Get(ctx, "a", metav1.GetOptions{})
	a.Labels = map[string]string{"app": "elsewhere"}
	a.ResourceVersion = "3"
	if _, err := cs.CoreV1().Pods("default").Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("relabelled pod removed", func() error {
		items, err := slices()
		if err != nil {
			return err
		}
		if len(items) != 1 || len(items[0].Endpoints) != 1 || items[0].Endpoints[0].Addresses[0] != "10.244.0.3" {
			return fmt.Errorf("slices = %+v", items)
		}
		return nil
	})

	// The selector removed: the endpoints become the user's; ours go.
	svc, _ := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	svc.Spec.Selector = nil
	svc.ResourceVersion = "4"
	if _, err := cs.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("managed slices deleted", func() error {
		items, err := slices()
		if err != nil {
			return err
		}
		if len(items) != 0 {
			return fmt.Errorf("%d slices left", len(items))
		}
		return nil
	})
	if _, err := cs.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatalf("the Endpoints of a Service without a selector are the user's to keep: %v", err)
	}

	// The Service deleted: its Endpoints go with it.
	if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("Endpoints deleted with the Service", func() error {
		if _, err := cs.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Endpoints still there: %v", err)
		}
		return nil
	})
}
