package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestSecretsEncryptedAtRest: a Secret's value in etcd is Kubernetes'
// AES-GCM envelope (no plaintext), a ConfigMap's is not encrypted, the key
// survives a restart, a key rotation under a writing client leaves every
// Secret readable and under the new key, and a server that joins reads
// what the first wrote.
func TestSecretsEncryptedAtRest(t *testing.T) {
	a := cluster.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := a.Clientset()
	const marker = "hunter2-plaintext-marker"
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-pass"},
		StringData: map[string]string{"password": marker}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Data: map[string]string{"k": marker}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	raw := func(s *cluster.Server, suffix string) []byte {
		t.Helper()
		resp, err := etcdClient(t, s).Get(ctx, "/registry/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if strings.HasSuffix(string(kv.Key), suffix) {
				return kv.Value
			}
		}
		t.Fatalf("no etcd key ends in %s", suffix)
		return nil
	}
	if v := raw(a, "secrets/default/db-pass"); !bytes.HasPrefix(v, []byte("k8s:enc:aesgcm:v1:key1:")) || bytes.Contains(v, []byte(marker)) {
		t.Fatalf("the Secret in etcd: %q", v)
	}
	if v := raw(a, "configmaps/default/plain"); !bytes.Contains(v, []byte(marker)) {
		t.Fatalf("a ConfigMap is not encrypted by default, but etcd holds %q", v)
	}

	a.Stop()
	a.Start()
	a.WaitReady(time.Minute)
	got, err := a.Clientset().CoreV1().Secrets("default").Get(ctx, "db-pass", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != marker {
		t.Fatalf("after a restart: %v: %v", got, err)
	}

	// Key rotation while a client keeps writing Secrets: prepare, restart,
	// rotate, restart, reencrypt. Every Secret written is readable after,
	// and stored under the new key.
	var written []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("load-%d", i)
			if _, err := a.Clientset().CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
				StringData: map[string]string{"v": name}}, metav1.CreateOptions{}); err == nil {
				written = append(written, name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	secretsEncrypt := func(verb string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "secrets-encrypt", verb, "--data-dir", a.DataDir,
			"--endpoints", fmt.Sprintf("https://127.0.0.1:%d", a.EtcdClient)).CombinedOutput()
		if err != nil {
			t.Fatalf("petrelctl secrets-encrypt %s: %v\n%s", verb, err, out)
		}
		return string(out)
	}
	restart := func() {
		a.Stop()
		a.Start()
		a.WaitReady(time.Minute)
	}
	mustContain(t, secretsEncrypt("prepare"), "added key key2")
	restart()
	mustContain(t, secretsEncrypt("rotate"), "written with key2")
	restart()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	mustContain(t, secretsEncrypt("reencrypt"), "rewrote", "removed the old keys [key1]")
	mustContain(t, secretsEncrypt("status"), "secrets    aesgcm:key2", "k8s:enc:aesgcm:v1:key2")
	if out := secretsEncrypt("status"); strings.Contains(out, "key1") || strings.Contains(out, "not encrypted") {
		t.Fatalf("Secrets left under the old key after reencrypt:\n%s", out)
	}
	if len(written) < 5 {
		t.Fatalf("only %d Secrets written during the rotation", len(written))
	}
	for _, name := range append(written, "db-pass") {
		s, err := a.Clientset().CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil || (name != "db-pass" && string(s.Data["v"]) != name) {
			t.Fatalf("Secret %s after the rotation: %v %v", name, s, err)
		}
	}

	// A server that joins now gets the keys and reads what the first wrote.
	b := cluster.StartServer(t, a.JoinArgs(t)...)
	got, err = b.Clientset().CoreV1().Secrets("default").Get(ctx, "db-pass", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != marker {
		t.Fatalf("the joined server reads %v: %v", got, err)
	}

	// A key prepared on the first server reaches the joined one through
	// etcd at its restart (sealed there: etcd does not hold it in clear).
	mustContain(t, secretsEncrypt("prepare"), "added key key3", "every server takes it from etcd at its restart")
	cfgFile := func(s *cluster.Server) string {
		b, err := os.ReadFile(filepath.Join(s.DataDir, "pki", "encryption-config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if strings.Contains(cfgFile(b), "key3") {
		t.Fatal("the joined server has key3 before its restart")
	}
	resp, err := etcdClient(t, a).Get(ctx, "/petrel/encryption-config")
	if err != nil || len(resp.Kvs) != 1 || bytes.Contains(resp.Kvs[0].Value, []byte("key3")) || bytes.Contains(resp.Kvs[0].Value, []byte("aesgcm")) {
		t.Fatalf("the cluster's copy in etcd: %v %q", err, resp.Kvs)
	}
	b.Stop()
	b.Start()
	b.WaitReady(time.Minute)
	if got := cfgFile(b); got != cfgFile(a) || !strings.Contains(got, "key3") {
		t.Fatalf("after its restart the joined server's file is:\n%s\nthe first's:\n%s", got, cfgFile(a))
	}
	if _, err := b.Clientset().CoreV1().Secrets("default").Get(ctx, "db-pass", metav1.GetOptions{}); err != nil {
		t.Fatalf("the joined server reads after the restart: %v", err)
	}
}

// TestEncryptionConfigListsCustomResource: an EncryptionConfiguration that
// lists a custom resource (here under aescbc) encrypts its objects too, as
// Kubernetes does; resources it does not list stay as they are.
func TestEncryptionConfigListsCustomResource(t *testing.T) {
	requireKubectl(t)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "encryption.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [widgets.example.com, secrets]
  providers:
  - aescbc: {keys: [{name: k1, secret: %s}]}
  - identity: {}
`, base64.StdEncoding.EncodeToString(key))), 0o600); err != nil {
		t.Fatal(err)
	}
	s := cluster.StartServer(t, "--encryption-provider-config", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kubectl(t, s, widgetCRD, "apply", "-f", "-")
	const marker = "widget-plaintext-marker"
	waitFor(t, 20*time.Second, func() bool {
		_, err := s.Kubectl(ctx, fmt.Sprintf("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default, labels: {m: %s}}\nspec: {size: small}\n", marker), "apply", "-f", "-")
		return err == nil
	})
	kubectl(t, s, "", "create", "configmap", "plain", "--from-literal=k="+marker)
	resp, err := etcdClient(t, s).Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		switch {
		case strings.HasSuffix(k, "/widgets/default/w1"):
			seen++
			if !bytes.HasPrefix(kv.Value, []byte("k8s:enc:aescbc:v1:k1:")) || bytes.Contains(kv.Value, []byte(marker)) {
				t.Fatalf("the Widget in etcd: %q", kv.Value)
			}
		case strings.HasSuffix(k, "/configmaps/default/plain"):
			seen++
			if !bytes.Contains(kv.Value, []byte(marker)) {
				t.Fatalf("a ConfigMap the file does not list is encrypted: %q", kv.Value)
			}
		}
	}
	if seen != 2 {
		t.Fatalf("found %d of the two keys in etcd", seen)
	}
	out := kubectl(t, s, "", "get", "widget", "w1", "-o", "jsonpath={.metadata.labels.m}")
	if out != marker {
		t.Fatalf("the Widget reads back as %q", out)
	}
}
