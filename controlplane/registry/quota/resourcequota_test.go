package quota

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestQuotaUsageAndScopes(t *testing.T) {
	q := resource.MustParse
	deadline := int64(60)
	withCPU := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("2")}}}},
		Containers: []corev1.Container{
			{Name: "a", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("500m")}, Limits: corev1.ResourceList{corev1.ResourceMemory: q("1Gi")}}},
			{Name: "b", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("700m")}}},
		}}}
	use := QuotaUsage(schema.GroupResource{Resource: "pods"}, withCPU)
	// The init container alone asks for more than the others together.
	if v := use["requests.cpu"]; v.Cmp(q("2")) != 0 {
		t.Fatalf("requests.cpu %s, want 2", v.String())
	}
	if v := use["limits.memory"]; v.Cmp(q("1Gi")) != 0 || use.Pods().Value() != 1 {
		t.Fatalf("usage %v", use)
	}
	finished := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}
	if len(QuotaUsage(schema.GroupResource{Resource: "pods"}, finished)) != 0 {
		t.Fatal("a finished pod counts nothing")
	}
	if _, ok := QuotaUsage(schema.GroupResource{Group: "apps", Resource: "deployments"}, nil)["count/deployments.apps"]; !ok {
		t.Fatal("count/deployments.apps")
	}

	bestEffort := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}, ActiveDeadlineSeconds: &deadline}}
	scoped := func(scopes ...corev1.ResourceQuotaScope) *corev1.ResourceQuota {
		return &corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Scopes: scopes, Hard: corev1.ResourceList{corev1.ResourcePods: q("1")}}}
	}
	cases := []struct {
		quota *corev1.ResourceQuota
		obj   *corev1.Pod
		want  bool
	}{
		{scoped(), withCPU, true},
		{scoped(corev1.ResourceQuotaScopeBestEffort), bestEffort, true},
		{scoped(corev1.ResourceQuotaScopeBestEffort), withCPU, false},
		{scoped(corev1.ResourceQuotaScopeNotBestEffort), withCPU, true},
		{scoped(corev1.ResourceQuotaScopeTerminating), bestEffort, true},
		{scoped(corev1.ResourceQuotaScopeTerminating, corev1.ResourceQuotaScopeNotBestEffort), bestEffort, false},
		{scoped(corev1.ResourceQuotaScopeNotTerminating), withCPU, true},
	}
	for i, c := range cases {
		if got := QuotaCovers(c.quota, c.obj); got != c.want {
			t.Errorf("case %d (%v): covers %v, want %v", i, c.quota.Spec.Scopes, got, c.want)
		}
	}
	if QuotaCovers(scoped(corev1.ResourceQuotaScopeBestEffort), &corev1.ConfigMap{}) {
		t.Error("a scoped quota counts pods only")
	}
	bad := scoped(corev1.ResourceQuotaScopeBestEffort)
	bad.Spec.Hard[corev1.ResourceRequestsCPU] = q("1")
	if errs := validateQuota(bad); len(errs) != 1 || errs[0].Field != "spec.hard[requests.cpu]" {
		t.Fatalf("BestEffort with requests.cpu: %v", errs)
	}
}

func TestQuotaUsageOfServices(t *testing.T) {
	svc := func(typ corev1.ServiceType, allocate *bool, nodePorts ...int32) *corev1.Service {
		s := &corev1.Service{Spec: corev1.ServiceSpec{Type: typ, AllocateLoadBalancerNodePorts: allocate}}
		for _, np := range nodePorts {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 80, NodePort: np})
		}
		return s
	}
	no := false
	for name, tc := range map[string]struct {
		svc                  *corev1.Service
		nodePorts, balancers int64
	}{
		// Before allocation (admission), the node ports are still 0.
		"NodePort, two ports, not allocated yet": {svc(corev1.ServiceTypeNodePort, nil, 0, 0), 2, 0},
		"LoadBalancer":                           {svc(corev1.ServiceTypeLoadBalancer, nil, 0), 1, 1},
		"LoadBalancer without node ports":        {svc(corev1.ServiceTypeLoadBalancer, &no, 0), 0, 1},
		"LoadBalancer without, one asked for":    {svc(corev1.ServiceTypeLoadBalancer, &no, 0, 30001), 1, 1},
		"ClusterIP":                              {svc(corev1.ServiceTypeClusterIP, nil, 0), 0, 0},
	} {
		use := QuotaUsage(schema.GroupResource{Resource: "services"}, tc.svc)
		np, lb, n := use[corev1.ResourceServicesNodePorts], use[corev1.ResourceServicesLoadBalancers], use[corev1.ResourceServices]
		if np.Value() != tc.nodePorts || lb.Value() != tc.balancers || n.Value() != 1 {
			t.Errorf("%s: %v", name, use)
		}
	}
}

func TestQuotaUsageExtendedAndStorageClass(t *testing.T) {
	q := resource.MustParse
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: q("500m"), corev1.ResourceEphemeralStorage: q("30Gi"), "example.com/dongle": q("2")},
		Limits:   corev1.ResourceList{"example.com/dongle": q("2")}}}}}}
	use := QuotaUsage(schema.GroupResource{Resource: "pods"}, pod)
	for n, want := range map[corev1.ResourceName]string{"requests.example.com/dongle": "2", "ephemeral-storage": "30Gi", "requests.ephemeral-storage": "30Gi", "cpu": "500m"} {
		if v, ok := use[n]; !ok || v.Cmp(q(want)) != 0 {
			t.Errorf("%s: %v, want %s", n, use[n], want)
		}
	}
	gold := "gold"
	pvc := &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &gold,
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q("1Gi")}}}}
	use = QuotaUsage(schema.GroupResource{Resource: "persistentvolumeclaims"}, pvc)
	if v := use["gold.storageclass.storage.k8s.io/requests.storage"]; v.Cmp(q("1Gi")) != 0 {
		t.Errorf("per-class storage: %v", use)
	}
	if v := use["gold.storageclass.storage.k8s.io/persistentvolumeclaims"]; v.Value() != 1 {
		t.Errorf("per-class claims: %v", use)
	}
	if v := QuotaUsage(schema.GroupResource{Resource: "replicationcontrollers"}, &corev1.ReplicationController{})["replicationcontrollers"]; v.Value() != 1 {
		t.Error("replicationcontrollers not counted")
	}
}
