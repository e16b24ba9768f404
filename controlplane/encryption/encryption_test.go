package encryption

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/storage/value"
)

func TestDefaultConfigEncryptsSecretsOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), DefaultFile)
	if err := EnsureDefault(path); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(path)
	if err := EnsureDefault(path); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(first, again) {
		t.Fatal("a second start made a new key")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	tr, err := Load(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if tr.For(schema.GroupResource{Resource: "configmaps"}) != nil {
		t.Fatal("configmaps encrypted, only secrets should be")
	}
	secrets := tr.For(schema.GroupResource{Resource: "secrets"})
	if secrets == nil {
		t.Fatal("secrets not encrypted")
	}
	key := value.DefaultContext("/registry/secrets/default/s")
	plain := []byte(`{"kind":"Secret","data":{"password":"aHVudGVyMg=="}}`)
	enc, err := secrets.TransformToStorage(ctx, plain, key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(enc), "k8s:enc:aesgcm:v1:key1:") || bytes.Contains(enc, []byte("aHVudGVyMg")) {
		t.Fatalf("stored %q", enc)
	}
	back, stale, err := secrets.TransformFromStorage(ctx, enc, key)
	if err != nil || stale || !bytes.Equal(back, plain) {
		t.Fatalf("read back %q stale=%v: %v", back, stale, err)
	}
	// The key is authenticated data: a value moved to another key is refused.
	if _, _, err := secrets.TransformFromStorage(ctx, enc, value.DefaultContext("/registry/secrets/default/other")); err == nil {
		t.Fatal("a value read under another key")
	}
	// Plaintext written before encryption was on is still read, as stale.
	if back, stale, err := secrets.TransformFromStorage(ctx, plain, key); err != nil || !stale || !bytes.Equal(back, plain) {
		t.Fatalf("plaintext: %q stale=%v: %v", back, stale, err)
	}
}

func TestLoadRefusesBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a 5-byte AES key: %v", err)
	}
}

// TestPrepareRotate: a prepared key is readable before it writes; after
// rotation new values use it and the old key still reads what it wrote.
func TestPrepareRotate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "enc.yaml")
	if err := EnsureDefault(path); err != nil {
		t.Fatal(err)
	}
	key := value.DefaultContext("/registry/secrets/ns/s")
	secretsOf := func() value.Transformer {
		t.Helper()
		tr, err := Load(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		return tr.For(schema.GroupResource{Resource: "secrets"})
	}
	old, err := secretsOf().TransformToStorage(ctx, []byte("v1"), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(path); err == nil {
		t.Fatal("rotate without a prepared key")
	}
	name, err := Prepare(path)
	if err != nil || name != "key2" {
		t.Fatalf("prepare: %q %v", name, err)
	}
	if _, err := Prepare(path); err == nil {
		t.Fatal("a second prepare before rotation")
	}
	if enc, _ := secretsOf().TransformToStorage(ctx, []byte("v"), key); !strings.HasPrefix(string(enc), "k8s:enc:aesgcm:v1:key1:") {
		t.Fatalf("prepared key written with already: %q", enc)
	}
	if name, err := Rotate(path); err != nil || name != "key2" {
		t.Fatalf("rotate: %q %v", name, err)
	}
	tr := secretsOf()
	if enc, _ := tr.TransformToStorage(ctx, []byte("v"), key); !strings.HasPrefix(string(enc), "k8s:enc:aesgcm:v1:key2:") {
		t.Fatalf("after rotation: %q", enc)
	}
	if back, stale, err := tr.TransformFromStorage(ctx, old, key); err != nil || !stale || string(back) != "v1" {
		t.Fatalf("a key1 value after rotation: %q stale=%v %v", back, stale, err)
	}
	cfg, err := ReadConfig(path)
	if err != nil || Primary(cfg)["secrets"] != "aesgcm:key2" {
		t.Fatalf("primary: %v %v", cfg, err)
	}
	if dropped, err := Retire(path); err != nil || len(dropped) != 1 || dropped[0] != "key1" {
		t.Fatalf("retire: %v %v", dropped, err)
	}
	if _, _, err := secretsOf().TransformFromStorage(ctx, old, key); err == nil {
		t.Fatal("a key1 value still reads after key1 was retired")
	}
	if name, err := Prepare(path); err != nil || name != "key3" {
		t.Fatalf("prepare after retiring: %q %v", name, err)
	}
}

func TestSealOpen(t *testing.T) {
	key := make([]byte, 32)
	sealed, err := seal(key, []byte("config"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "config") {
		t.Fatal("sealed in clear")
	}
	if got, err := open(key, sealed); err != nil || string(got) != "config" {
		t.Fatalf("open: %q %v", got, err)
	}
	other := make([]byte, 32)
	other[0] = 1
	if _, err := open(other, sealed); err == nil {
		t.Fatal("opened with another cluster's key")
	}
	if _, err := open(key, sealed[:5]); err == nil {
		t.Fatal("opened a truncated value")
	}
}
