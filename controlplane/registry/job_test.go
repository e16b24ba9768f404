package registry

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// createJob runs a Job through what the apiserver does on create, in its
// order: PrepareForCreate, Default, Validate.
func createJob(t *testing.T, j *batchv1.Job) field.ErrorList {
	t.Helper()
	res := findResource(t, "jobs")
	var obj runtime.Object = j
	if res.PrepareForCreate != nil {
		res.PrepareForCreate(obj)
	}
	res.Default(obj)
	return res.Validate(obj)
}

func newJob(sel *metav1.LabelSelector, manual *bool, labels map[string]string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "churn", Namespace: "n", UID: types.UID("0d6f6a8e-uid")},
		Spec: batchv1.JobSpec{Selector: sel, ManualSelector: manual, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "c", Image: "i"}}}}},
	}
}

// TestJobSelectorGenerated: a Job without manualSelector gets Kubernetes'
// generated selector whether it sent no selector or an empty one (kube-burner's
// churn re-creates Jobs with `selector: {}`).
func TestJobSelectorGenerated(t *testing.T) {
	for name, sel := range map[string]*metav1.LabelSelector{
		"nil":        nil,
		"empty":      {},
		"empty maps": {MatchLabels: map[string]string{}, MatchExpressions: []metav1.LabelSelectorRequirement{}},
	} {
		t.Run(name, func(t *testing.T) {
			j := newJob(sel, nil, map[string]string{"app": "churn"})
			if errs := createJob(t, j); len(errs) > 0 {
				t.Fatalf("job rejected: %v", errs)
			}
			uid := string(j.UID)
			want := map[string]string{batchv1.ControllerUidLabel: uid}
			if j.Spec.Selector == nil || len(j.Spec.Selector.MatchExpressions) != 0 || !equalMaps(j.Spec.Selector.MatchLabels, want) {
				t.Fatalf("selector = %+v, want matchLabels %v", j.Spec.Selector, want)
			}
			wantLabels := map[string]string{"app": "churn",
				batchv1.ControllerUidLabel: uid, "controller-uid": uid,
				batchv1.JobNameLabel: "churn", "job-name": "churn"}
			if !equalMaps(j.Spec.Template.Labels, wantLabels) {
				t.Fatalf("template labels = %v, want %v", j.Spec.Template.Labels, wantLabels)
			}
		})
	}
}

// TestJobSelectorValidation: what Kubernetes refuses and accepts around the
// generated selector.
func TestJobSelectorValidation(t *testing.T) {
	yes := true
	cases := []struct {
		name      string
		job       *batchv1.Job
		wantField string // "" means valid
	}{
		{"a template label naming another uid", newJob(nil, nil, map[string]string{"controller-uid": "other"}), "spec.template.metadata.labels[controller-uid]"},
		{"a selector on something else", newJob(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, nil, map[string]string{"app": "x"}), "spec.selector"},
		{"manual selector", newJob(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, &yes, map[string]string{"app": "x"}), ""},
		{"manual selector not matching", newJob(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, &yes, map[string]string{"app": "y"}), "spec.template.metadata.labels"},
		{"manual without selector", newJob(nil, &yes, map[string]string{"app": "x"}), "spec.selector"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := createJob(t, c.job)
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

// TestEmptySelectorMessageNamesKind: the workloads that refuse an empty
// selector say which kind they are (the message said "deployment" for all).
func TestEmptySelectorMessageNamesKind(t *testing.T) {
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	empty := func() *metav1.LabelSelector { return &metav1.LabelSelector{} }
	meta := metav1.ObjectMeta{Name: "w", Namespace: "n"}
	for _, c := range []struct {
		resource, want string
		obj            runtime.Object
	}{
		{"statefulsets", "empty selector is invalid for statefulset", &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Selector: empty(), Template: tmpl}}},
		{"daemonsets", "empty selector is invalid for daemonset", &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: empty(), Template: tmpl}}},
		{"deployments", "empty selector is invalid for deployment", &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Selector: empty(), Template: tmpl}}},
	} {
		res := findResource(t, c.resource)
		res.Default(c.obj)
		errs := res.Validate(c.obj)
		found := false
		for _, e := range errs {
			if e.Field == "spec.selector" && e.Detail == c.want {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %q on spec.selector in %v", c.resource, c.want, errs)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
