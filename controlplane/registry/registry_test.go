package registry

import (
	"net"
	"testing"

	"github.com/petrel-project/petrel/controlplane/registry/coreapi"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func testConfig() Config {
	_, cidr, _ := net.ParseCIDR("10.96.0.0/16")
	return Config{ServiceCIDR: cidr, NodePortMin: 30000, NodePortMax: 32767}
}

func fieldsOf(errs field.ErrorList) map[string]bool {
	out := map[string]bool{}
	for _, e := range errs {
		out[e.Field] = true
	}
	return out
}

func TestServiceValidation(t *testing.T) {
	cfg := testConfig()
	port := func(p, np int32) corev1.ServicePort {
		return corev1.ServicePort{Port: p, NodePort: np, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(p)}
	}
	cases := []struct {
		name      string
		spec      corev1.ServiceSpec
		wantField string // "" means valid
	}{
		{"valid ClusterIP", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{port(80, 0)}}, ""},
		{"no ports", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}, "spec.ports"},
		{"headless without ports", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "None"}, ""},
		{"ClusterIP outside range", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.0.0.1", Ports: []corev1.ServicePort{port(80, 0)}}, "spec.clusterIPs[0]"},
		{"ClusterIP not an IP", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "nope", Ports: []corev1.ServicePort{port(80, 0)}}, "spec.clusterIP"},
		{"port out of range", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{port(70000, 0)}}, "spec.ports[0].port"},
		{"NodePort on ClusterIP", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{port(80, 30001)}}, "spec.ports[0].nodePort"},
		{"NodePort out of range", corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{port(80, 80)}}, "spec.ports[0].nodePort"},
		{"two unnamed ports", corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{port(80, 0), port(81, 0)}}, "spec.ports[1].name"},
		{"bad type", corev1.ServiceSpec{Type: "Magic", Ports: []corev1.ServicePort{port(80, 0)}}, "spec.type"},
		{"ExternalName without name", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}, "spec.externalName"},
		{"ExternalName valid", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "d"}, Spec: c.spec}
			coreapi.DefaultService(svc)
			errs := coreapi.ValidateService(svc, serviceRanges(cfg))
			if c.wantField == "" {
				if len(errs) > 0 {
					t.Fatalf("want valid, got %v", errs)
				}
				return
			}
			if !fieldsOf(errs)[c.wantField] {
				t.Fatalf("want an error on %s, got %v", c.wantField, errs)
			}
		})
	}
}

func TestPodDefaultsAndValidation(t *testing.T) {
	res := findResource(t, "pods")
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Resources: corev1.ResourceRequirements{}}}}}
	res.Default(p)
	if p.Spec.RestartPolicy != corev1.RestartPolicyAlways || p.Spec.DNSPolicy != corev1.DNSClusterFirst || *p.Spec.TerminationGracePeriodSeconds != 30 ||
		p.Spec.ServiceAccountName != "default" || p.Spec.Containers[0].ImagePullPolicy != corev1.PullAlways || p.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Fatalf("pod defaults: %+v", p.Spec)
	}
	if len(p.Spec.Tolerations) != 2 {
		t.Fatalf("default not-ready/unreachable tolerations missing: %v", p.Spec.Tolerations)
	}
	if errs := res.Validate(p); len(errs) > 0 {
		t.Fatalf("valid pod rejected: %v", errs)
	}
	bad := p.DeepCopy()
	bad.Spec.Containers = append(bad.Spec.Containers, corev1.Container{Name: "c", Image: ""})
	f := fieldsOf(res.Validate(bad))
	if !f["spec.containers[1].name"] || !f["spec.containers[1].image"] {
		t.Fatalf("duplicate name and missing image not caught: %v", f)
	}
	changed := p.DeepCopy()
	changed.Spec.RestartPolicy = corev1.RestartPolicyNever
	if errs := res.ValidateUpdate(changed, p); len(errs) == 0 {
		t.Fatal("a pod's restartPolicy changed on update")
	}
	image := p.DeepCopy()
	image.Spec.Containers[0].Image = "busybox:2"
	if errs := res.ValidateUpdate(image, p); len(errs) > 0 {
		t.Fatalf("image update rejected: %v", errs)
	}
}

func TestDeploymentSelectorMustMatchTemplate(t *testing.T) {
	res := findResource(t, "deployments")
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "n"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "y"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}}}
	res.Default(d)
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.RollingUpdate.MaxSurge.StrVal != "25%" || *d.Spec.RevisionHistoryLimit != 10 {
		t.Fatalf("deployment defaults: %+v", d.Spec)
	}
	if !fieldsOf(res.Validate(d))["spec.template.metadata.labels"] {
		t.Fatal("selector/template mismatch not caught")
	}
	d.Spec.Template.Labels["app"] = "x"
	if errs := res.Validate(d); len(errs) > 0 {
		t.Fatalf("valid deployment rejected: %v", errs)
	}
	moved := d.DeepCopy()
	moved.Spec.Selector.MatchLabels["app"] = "z"
	if !fieldsOf(res.ValidateUpdate(moved, d))["spec.selector"] {
		t.Fatal("selector change allowed")
	}
	// A status write keeps the labels; a spec write may change them.
	d.Labels = map[string]string{"test-deployment": "updated"}
	status := d.DeepCopy()
	status.Labels = map[string]string{"test-deployment": "patched-status"}
	res.PrepareForUpdate("status", status, d)
	if status.Labels["test-deployment"] != "updated" {
		t.Fatalf("a status write changed the labels to %v", status.Labels)
	}
	spec := status.DeepCopy()
	spec.Labels = map[string]string{"test-deployment": "relabelled"}
	res.PrepareForUpdate("", spec, d)
	if spec.Labels["test-deployment"] != "relabelled" {
		t.Fatalf("a spec write lost its labels: %v", spec.Labels)
	}
}

func TestTableColumns(t *testing.T) {
	res := findResource(t, "pods")
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1"}, Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.5", ContainerStatuses: []corev1.ContainerStatus{
			{Ready: true, RestartCount: 2}, {Ready: false, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}}
	tab := res.Table([]runtime.Object{p}, false, nil)
	want := []string{"Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"}
	for i, w := range want {
		if tab.ColumnDefinitions[i].Name != w {
			t.Fatalf("column %d = %s, want %s", i, tab.ColumnDefinitions[i].Name, w)
		}
	}
	cells := tab.Rows[0].Cells
	if cells[0] != "web-1" || cells[1] != "1/2" || cells[2] != "CrashLoopBackOff" || cells[3] != "2" || cells[5] != "10.244.0.5" || cells[6] != "n1" {
		t.Fatalf("cells: %v", cells)
	}
}

func findResource(t testing.TB, name string) *Resource {
	for _, r := range All(testConfig()) {
		if r.GVR.Resource == name {
			return r
		}
	}
	t.Fatalf("no resource %s", name)
	return nil
}

// TestObjectFieldsMatchSelectableFields holds the watch cache's compact
// fields to the full set selectors are checked against.
func TestObjectFieldsMatchSelectableFields(t *testing.T) {
	objs := map[string]runtime.Object{
		"Pod": &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
			Spec: corev1.PodSpec{NodeName: "n1", RestartPolicy: corev1.RestartPolicyAlways}, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		"ConfigMap": &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"}},
		"Node":      &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{Unschedulable: true}},
	}
	for _, r := range All(testConfig()) {
		obj, ok := objs[r.Kind]
		if !ok || r.GVR.Group != "" {
			continue
		}
		want := r.SelectableFields(obj)
		got := r.ObjectFields(obj)
		for k, v := range want {
			if !got.Has(k) || got.Get(k) != v {
				t.Errorf("%s %s: Has %v Get %q, want %q", r.Kind, k, got.Has(k), got.Get(k), v)
			}
		}
		for _, absent := range []string{"spec.nothing", "metadata.namespace"} {
			if _, in := want[absent]; !in && got.Has(absent) {
				t.Errorf("%s has %s", r.Kind, absent)
			}
		}
	}
}

// A host-network pod's container ports are node ports: Kubernetes makes them
// its host ports, so that two such pods are never placed (or run) together.
// Templates keep theirs as written.
func TestHostNetworkPodGetsHostPorts(t *testing.T) {
	res := findResource(t, "pods")
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d"},
		Spec: corev1.PodSpec{HostNetwork: true,
			InitContainers: []corev1.Container{{Name: "i", Image: "busybox", Ports: []corev1.ContainerPort{{ContainerPort: 9000}}}},
			Containers: []corev1.Container{{Name: "c", Image: "busybox", Ports: []corev1.ContainerPort{
				{ContainerPort: 8080}, {ContainerPort: 8443, HostPort: 8443}}}}}}
	res.Default(p)
	if got := p.Spec.InitContainers[0].Ports[0].HostPort; got != 9000 {
		t.Errorf("init container's host port %d, want 9000", got)
	}
	if c := p.Spec.Containers[0].Ports; c[0].HostPort != 8080 || c[1].HostPort != 8443 {
		t.Errorf("container host ports %+v", c)
	}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: "d"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}}}
	res.Default(plain)
	if got := plain.Spec.Containers[0].Ports[0].HostPort; got != 0 {
		t.Errorf("a pod network pod got host port %d", got)
	}
}
