package podvolume

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A volume's files follow their object: changed ones replaced, removed
// ones (and the directories they leave empty) pruned, the rest untouched.
func TestReplaceAndPrune(t *testing.T) {
	dir := t.TempDir()
	keep, gone := filepath.Join(dir, "a"), filepath.Join(dir, "sub", "b")
	for _, p := range []string{keep, gone} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := ReplaceFile(p, []byte("one"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := ReplaceFile(keep, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(keep); string(b) != "two" {
		t.Fatalf("replaced file holds %q", b)
	}
	if st, _ := os.Stat(keep); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
	if err := Prune(dir, map[string]bool{keep: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Fatalf("a removed key's file is still there (%v)", err)
	}
	if _, err := os.Stat(filepath.Dir(gone)); !os.IsNotExist(err) {
		t.Fatal("the emptied directory is still there")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal(err)
	}
}

func TestHostPathTypes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	typ := func(t corev1.HostPathType) *corev1.HostPathType { return &t }
	var mismatch *MismatchError
	if err := HostPath(&corev1.HostPathVolumeSource{Path: file, Type: typ(corev1.HostPathDirectory)}); err == nil {
		t.Fatal("a file passed as a Directory")
	} else if !asMismatch(err, &mismatch) || mismatch.Want != "directory" {
		t.Fatalf("error %v is not a MismatchError", err)
	}
	made := filepath.Join(dir, "new", "dir")
	if err := HostPath(&corev1.HostPathVolumeSource{Path: made, Type: typ(corev1.HostPathDirectoryOrCreate)}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(made); err != nil || !st.IsDir() {
		t.Fatalf("DirectoryOrCreate made nothing: %v", err)
	}
}

func asMismatch(err error, target **MismatchError) bool {
	m, ok := err.(*MismatchError)
	*target = m
	return ok
}
