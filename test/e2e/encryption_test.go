package e2e

import (
	"bytes"
	"context"
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
// survives a restart, and a server that joins reads what the first wrote.
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

	b := cluster.StartServer(t, a.JoinArgs(t)...)
	got, err := b.Clientset().CoreV1().Secrets("default").Get(ctx, "db-pass", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != marker {
		t.Fatalf("the joined server reads %v: %v", got, err)
	}
	a.Stop()
	a.Start()
	a.WaitReady(time.Minute)
	got, err = a.Clientset().CoreV1().Secrets("default").Get(ctx, "db-pass", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != marker {
		t.Fatalf("after a restart: %v: %v", got, err)
	}
}
