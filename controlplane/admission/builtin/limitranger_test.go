package builtin

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/quota"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestLimitRanges(t *testing.T) {
	q := resource.MustParse
	lr := &corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type:           corev1.LimitTypeContainer,
		Max:            corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")},
		Min:            corev1.ResourceList{corev1.ResourceMemory: q("16Mi")},
		DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: q("100m")},
	}}}}
	quota.DefaultLimitRange(lr)
	item := lr.Spec.Limits[0]
	if d := item.Default[corev1.ResourceCPU]; d.Cmp(q("1")) != 0 {
		t.Fatalf("default limit from max: %v", item.Default)
	}
	if r := item.DefaultRequest[corev1.ResourceMemory]; r.Cmp(q("1Gi")) != 0 {
		t.Fatalf("default request from the default limit: %v", item.DefaultRequest)
	}
	var validate func(runtime.Object) field.ErrorList
	for _, r := range registry.All(registry.Config{}) {
		if r.Kind == "LimitRange" {
			validate = r.Validate
		}
	}
	if errs := validate(lr); len(errs) != 0 {
		t.Fatalf("valid range: %v", errs)
	}

	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "bare"}, {Name: "own",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("500m")}, Requests: corev1.ResourceList{corev1.ResourceCPU: q("500m")}}}}}}
	if problems := applyLimitRanges(pod, []*corev1.LimitRange{lr}); len(problems) != 0 {
		t.Fatalf("a pod within bounds: %v", problems)
	}
	bare := pod.Spec.Containers[0].Resources
	if l := bare.Limits[corev1.ResourceMemory]; l.Cmp(q("1Gi")) != 0 || bare.Requests.Cpu().Cmp(q("100m")) != 0 {
		t.Fatalf("defaults not applied: %+v", bare)
	}
	if own := pod.Spec.Containers[1].Resources; own.Limits.Cpu().Cmp(q("500m")) != 0 {
		t.Fatalf("a container's own limit was replaced: %+v", own)
	}
	if a := pod.Annotations[quota.LimitRangeAnnotation]; !strings.Contains(a, "cpu limit, cpu request, memory limit, memory request for container bare") {
		t.Fatalf("annotation %q", a)
	}

	big := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q("2")}}}}}}
	problems := applyLimitRanges(big, []*corev1.LimitRange{lr})
	if len(problems) != 1 || problems[0] != "maximum cpu usage per Container is 1, but limit is 2" {
		t.Fatalf("problems %q", problems)
	}
	if _, ok := big.Annotations[quota.LimitRangeAnnotation]; ok {
		t.Fatal("a refused pod was annotated")
	}

	bad := &corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
		Min: corev1.ResourceList{corev1.ResourceCPU: q("2")}, Max: corev1.ResourceList{corev1.ResourceCPU: q("1")}}}}}
	if errs := validate(bad); len(errs) == 0 || errs[0].Field != "spec.limits[0].min[cpu]" {
		t.Fatalf("min above max: %v", errs)
	}
}
