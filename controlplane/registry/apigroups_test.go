package registry

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// check runs a kind's defaults and validation on obj and wants an error on
// field ("" for none).
func check(t *testing.T, res *Resource, obj runtime.Object, field string) {
	t.Helper()
	if res.Default != nil {
		res.Default(obj)
	}
	errs := res.Validate(obj)
	if field == "" {
		if len(errs) > 0 {
			t.Fatalf("want valid, got %v", errs)
		}
		return
	}
	if !fieldsOf(errs)[field] {
		t.Fatalf("want an error on %s, got %v", field, errs)
	}
}

func testTemplate(labels map[string]string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
}

func TestReplicationControllerDefaultsAndValidation(t *testing.T) {
	res := findResource(t, "replicationcontrollers")
	rc := &corev1.ReplicationController{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "d"},
		Spec: corev1.ReplicationControllerSpec{Template: testTemplate(map[string]string{"app": "x"})}}
	check(t, res, rc, "")
	if rc.Spec.Selector["app"] != "x" || rc.Labels["app"] != "x" || *rc.Spec.Replicas != 1 {
		t.Fatalf("defaults from the template: selector %v, labels %v, replicas %v", rc.Spec.Selector, rc.Labels, *rc.Spec.Replicas)
	}
	if rc.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Fatalf("template's pod spec not defaulted: %+v", rc.Spec.Template.Spec)
	}
	if spec, status, sel := res.Scale.Get(rc); spec != 1 || status != 0 || sel != "app=x" {
		t.Fatalf("scale: %d %d %q", spec, status, sel)
	}
	for name, c := range map[string]struct {
		rc    *corev1.ReplicationController
		field string
	}{
		"no template":       {&corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Selector: map[string]string{"a": "b"}}}, "spec.template"},
		"no selector":       {&corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Template: testTemplate(nil)}}, "spec.selector"},
		"selector mismatch": {&corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Selector: map[string]string{"a": "b"}, Template: testTemplate(map[string]string{"a": "c"})}}, "spec.template.metadata.labels"},
		"negative replicas": {&corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Replicas: int32p(-1), Template: testTemplate(map[string]string{"a": "b"})}}, "spec.replicas"},
		"restart policy Never": {&corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Template: func() *corev1.PodTemplateSpec {
			t := testTemplate(map[string]string{"a": "b"})
			t.Spec.RestartPolicy = corev1.RestartPolicyNever
			return t
		}()}}, "spec.template.spec.restartPolicy"},
	} {
		t.Run(name, func(t *testing.T) { check(t, res, c.rc, c.field) })
	}
}

func TestPodTemplateValidation(t *testing.T) {
	res := findResource(t, "podtemplates")
	pt := &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d"}, Template: *testTemplate(map[string]string{"a": "b"})}
	check(t, res, pt, "")
	pt.Template.Spec.Containers = nil
	check(t, res, pt, "template.spec.containers")
}

func TestEphemeralContainersSubresource(t *testing.T) {
	res := findResource(t, "pods")
	if !res.HasSubresource("ephemeralcontainers") {
		t.Fatal("pods/ephemeralcontainers not served")
	}
	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d", Labels: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
	res.Default(old)
	upd := old.DeepCopy()
	upd.Labels = map[string]string{"changed": "yes"}
	upd.Spec.Containers[0].Image = "other"
	upd.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox"}, TargetContainerName: "app"}}
	res.PrepareForUpdate("ephemeralcontainers", upd, old)
	res.Default(upd)
	if upd.Labels["a"] != "b" || upd.Spec.Containers[0].Image != "busybox" || len(upd.Spec.EphemeralContainers) != 1 {
		t.Fatalf("only ephemeral containers may change: %+v", upd)
	}
	if upd.Spec.EphemeralContainers[0].TerminationMessagePolicy == "" {
		t.Fatal("ephemeral container not defaulted")
	}
	if errs := res.ValidateSubresourceUpdate("ephemeralcontainers", upd, old); len(errs) > 0 {
		t.Fatalf("adding a debugger: %v", errs)
	}
	// Once there, it may not change or go.
	again := upd.DeepCopy()
	again.Spec.EphemeralContainers[0].Image = "else"
	if errs := res.ValidateSubresourceUpdate("ephemeralcontainers", again, upd); !fieldsOf(errs)["spec.ephemeralContainers"] {
		t.Fatalf("changed ephemeral container: %v", errs)
	}
	dup := upd.DeepCopy()
	dup.Spec.EphemeralContainers = append(dup.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: "app", Image: "busybox", Ports: []corev1.ContainerPort{{ContainerPort: 80}}}})
	errs := res.ValidateSubresourceUpdate("ephemeralcontainers", dup, upd)
	if f := fieldsOf(errs); !f["spec.ephemeralContainers[1].name"] || !f["spec.ephemeralContainers[1].ports"] {
		t.Fatalf("duplicate name and ports: %v", errs)
	}
	// The main resource refuses the same change.
	if errs := res.ValidateUpdate(upd, old); len(errs) == 0 {
		t.Fatal("an update of the pod itself added an ephemeral container")
	}
}
