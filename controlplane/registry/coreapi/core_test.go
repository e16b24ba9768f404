package coreapi

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestValidatePodSysctlsAndSubPaths(t *testing.T) {
	base := func() *corev1.PodSpec {
		return &corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways,
			Volumes:    []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{Name: "c", Image: "i", VolumeMounts: []corev1.VolumeMount{{Name: "v", MountPath: "/v"}}}}}
	}
	for name, tc := range map[string]struct {
		change func(*corev1.PodSpec)
		want   []string // substrings of the error list; none: valid
	}{
		"valid sysctls": {func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shm_rmid_forced"}, {Name: "net/ipv4/ip_local_port_range"}, {Name: "safe-and-unsafe"}}}
		}, nil},
		"bad sysctl names": {func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "foo-"}, {Name: "kernel.shmmax"}, {Name: "bar.."}, {Name: ""}}}
		}, []string{`spec.securityContext.sysctls[0].name: Invalid value: "foo-"`, `spec.securityContext.sysctls[2].name: Invalid value: "bar.."`, `spec.securityContext.sysctls[3].name: Required value`}},
		"duplicate sysctl": {func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shm_rmid_forced"}, {Name: "kernel.shm_rmid_forced"}}}
		}, []string{`sysctls[1].name: Duplicate value`}},
		"net sysctl on the host network": {func(s *corev1.PodSpec) {
			s.HostNetwork = true
			s.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "net.ipv4.tcp_syncookies"}}}
		}, []string{`may not be specified when 'hostNetwork' is true`}},
		"subPathExpr": {func(s *corev1.PodSpec) { s.Containers[0].VolumeMounts[0].SubPathExpr = "$(POD)/logs" }, nil},
		"absolute subPath": {func(s *corev1.PodSpec) { s.Containers[0].VolumeMounts[0].SubPath = "/etc" },
			[]string{`volumeMounts[0].subPath: Invalid value: "/etc": must be a relative path`}},
		"subPath stepping up": {func(s *corev1.PodSpec) { s.Containers[0].VolumeMounts[0].SubPathExpr = "a/../../b" },
			[]string{`subPathExpr: Invalid value: "a/../../b": must not contain '..'`}},
		"both subPath forms": {func(s *corev1.PodSpec) {
			s.Containers[0].VolumeMounts[0].SubPath, s.Containers[0].VolumeMounts[0].SubPathExpr = "a", "b"
		}, []string{`mutually exclusive`}},
	} {
		s := base()
		tc.change(s)
		errs := ValidatePodSpec(s, field.NewPath("spec")).ToAggregate()
		if len(tc.want) == 0 {
			if errs != nil {
				t.Errorf("%s: %v", name, errs)
			}
			continue
		}
		if errs == nil {
			t.Errorf("%s: valid, want %v", name, tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(errs.Error(), w) {
				t.Errorf("%s: %v does not say %q", name, errs, w)
			}
		}
	}
}
