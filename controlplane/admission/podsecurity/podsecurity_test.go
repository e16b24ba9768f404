package podsecurity

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
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
