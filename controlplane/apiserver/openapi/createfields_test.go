package openapi_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/apiserver"
	petrelopenapi "github.com/petrel-project/petrel/controlplane/apiserver/openapi"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/managedfields"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// The create fast path gives the same managed fields entry as the field
// manager's general path, for objects with maps, keyed lists, atomic
// lists, quantities and status.
func TestCreateFieldsMatchTheFieldManager(t *testing.T) {
	resources := registry.All(registry.Config{})
	oa, err := petrelopenapi.Build(apiserver.Scheme, resources)
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]*registry.Resource{}
	for _, r := range resources {
		byKind[r.Kind] = r
	}
	replicas := int32(3)
	objects := []runtime.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "default", Labels: map[string]string{"a": "b"}},
			Data: map[string]string{"k": "v", "k2": "v2"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Annotations: map[string]string{"x": "y"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "u1"}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "img", Args: []string{"-v", "-v"},
				Ports:     []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}},
				Env:       []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}},
				Volumes:     []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending}},
		// Duplicate keys in a keyed list, which the field manager allows.
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dup", Namespace: "default"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i",
			Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "default"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Type: corev1.ServiceTypeNodePort,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "img"}}}}}},
	}
	for _, obj := range objects {
		kind := reflect.TypeOf(obj).Elem().Name()
		res := byKind[kind]
		if res == nil {
			t.Fatalf("no resource for %s", kind)
		}
		gvk := res.GVK()
		if res.Default != nil {
			res.Default(obj)
		}
		setKindTo(obj, gvk)
		reset := oa.ResetFields(res, false)
		fast, ok := oa.CreateEntry(obj.DeepCopyObject(), gvk, res.New, "tester", reset)
		if !ok {
			t.Fatalf("%s: the fast path declined", kind)
		}
		fm, err := managedfields.NewDefaultFieldManager(oa.TypeConverter(), apiserver.Scheme, apiserver.Scheme, apiserver.Scheme, gvk, gvk.GroupVersion(), "", reset)
		if err != nil {
			t.Fatal(err)
		}
		empty := res.New()
		setKindTo(empty, gvk)
		out, err := fm.Update(empty, obj.DeepCopyObject(), "tester")
		if err != nil {
			t.Fatal(err)
		}
		general := accessor(out).GetManagedFields()
		if len(general) != 1 {
			t.Fatalf("%s: the field manager gave %d entries", kind, len(general))
		}
		g := general[0]
		if g.Manager != fast.Manager || g.Operation != fast.Operation || g.APIVersion != fast.APIVersion || g.FieldsType != fast.FieldsType {
			t.Errorf("%s: entry %+v, field manager %+v", kind, fast, g)
		}
		var a, b interface{}
		if err := json.Unmarshal(fast.FieldsV1.GetRawBytes(), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(g.FieldsV1.GetRawBytes(), &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: fields\n%s\nfield manager:\n%s", kind, fast.FieldsV1.GetRawBytes(), g.FieldsV1.GetRawBytes())
		}
	}
}

// kubectl's client-side apply record takes the general path.
func TestCreateFieldsDeclineLastApplied(t *testing.T) {
	oa, err := petrelopenapi.Build(apiserver.Scheme, registry.All(registry.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}"}}}
	gvk := corev1.SchemeGroupVersion.WithKind("ConfigMap")
	setKindTo(cm, gvk)
	if _, ok := oa.CreateEntry(cm, gvk, func() runtime.Object { return &corev1.ConfigMap{} }, "kubectl", nil); ok {
		t.Error("took the fast path with a last-applied-configuration")
	}
}

// BenchmarkCreateManagedFields compares the fast path with the field
// manager's general path for one Pod create.
func BenchmarkCreateManagedFields(b *testing.B) {
	resources := registry.All(registry.Config{})
	oa, err := petrelopenapi.Build(apiserver.Scheme, resources)
	if err != nil {
		b.Fatal(err)
	}
	var res *registry.Resource
	for _, r := range resources {
		if r.Kind == "Pod" {
			res = r
		}
	}
	gvk := res.GVK()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "img",
			Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
			Env:   []corev1.EnvVar{{Name: "A", Value: "1"}}}}}}
	res.Default(pod)
	setKindTo(pod, gvk)
	reset := oa.ResetFields(res, false)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := oa.CreateEntry(pod, gvk, res.New, "tester", reset); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("field-manager", func(b *testing.B) {
		fm, err := managedfields.NewDefaultFieldManager(oa.TypeConverter(), apiserver.Scheme, apiserver.Scheme, apiserver.Scheme, gvk, gvk.GroupVersion(), "", reset)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			empty := res.New()
			setKindTo(empty, gvk)
			if _, err := fm.Update(empty, pod.DeepCopyObject(), "tester"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func setKindTo(obj runtime.Object, gvk schema.GroupVersionKind) {
	obj.GetObjectKind().SetGroupVersionKind(gvk)
}

func accessor(obj runtime.Object) metav1.Object {
	acc, err := meta.Accessor(obj)
	if err != nil {
		panic(err)
	}
	return acc
}
