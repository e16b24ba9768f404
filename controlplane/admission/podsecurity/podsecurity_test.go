package podsecurity

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
)

func TestConfig(t *testing.T) {
	cfg, err := Config(Options{DefaultLevel: "baseline"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Defaults.Enforce != "baseline" || cfg.Defaults.Warn != "baseline" || cfg.Defaults.Audit != "baseline" {
		t.Fatalf("defaults: %+v", cfg.Defaults)
	}
	if !slices.Contains(cfg.Exemptions.Namespaces, "kube-system") {
		t.Fatalf("kube-system is not exempt: %+v", cfg.Exemptions)
	}
	if _, err := Config(Options{DefaultLevel: "strict"}); err == nil {
		t.Fatal("an unknown level was accepted")
	}
	file := filepath.Join(t.TempDir(), "psa.yaml")
	if err := os.WriteFile(file, []byte(`apiVersion: pod-security.admission.config.k8s.io/v1
kind: PodSecurityConfiguration
defaults: {enforce: restricted, enforce-version: latest}
exemptions: {usernames: [admin]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = Config(Options{ConfigFile: file, DefaultLevel: "privileged"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Defaults.Enforce != "restricted" || !slices.Equal(cfg.Exemptions.Usernames, []string{"admin"}) || len(cfg.Exemptions.Namespaces) != 0 {
		t.Fatalf("from the file: %+v", cfg)
	}
	if err := os.WriteFile(file, []byte("kind: PodSecurityConfiguration\napiVersion: pod-security.admission.config.k8s.io/v1\ndefaults: {enforce: nope}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := Config(Options{ConfigFile: file}); err == nil {
		if _, err := New(cfg, nil, nil); err == nil {
			t.Fatal("an invalid level in the file was accepted")
		}
	}
}

// "latest" is 1.32's policy: a probe's host is allowed in baseline (1.34
// forbade it), while what 1.32 forbids (hostNetwork) still is.
func TestLatestIsTheServedVersion(t *testing.T) {
	ev, err := newEvaluator()
	if err != nil {
		t.Fatal(err)
	}
	baseline := psaapi.LevelVersion{Level: psaapi.LevelBaseline, Version: psaapi.LatestVersion()}
	spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x", ReadinessProbe: &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "10.244.0.5", Port: intstr.FromInt32(80)}}}}}}
	for _, r := range ev.EvaluatePod(baseline, &metav1.ObjectMeta{}, spec) {
		if !r.Allowed {
			t.Fatalf("a probe host refused by baseline:latest: %s %s", r.ForbiddenReason, r.ForbiddenDetail)
		}
	}
	spec.HostNetwork = true
	refused := false
	for _, r := range ev.EvaluatePod(baseline, &metav1.ObjectMeta{}, spec) {
		refused = refused || !r.Allowed
	}
	if !refused {
		t.Fatal("hostNetwork allowed by baseline:latest")
	}
}
