package kubelet

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// TestVolumeFollowsItsObjects: files of a projected volume appear, change
// and go with their optional ConfigMaps and Secrets, at each sync.
func TestVolumeFollowsItsObjects(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: "ns"}, Data: map[string]string{"data-1": "value-1"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "changed", Namespace: "ns"}, Data: map[string]string{"data-1": "value-1", "dropped": "x"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "nested", Namespace: "ns"}, Data: map[string][]byte{"k": []byte("v")}})
	k := &Kubelet{client: cs}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	opt := ptr.To(true)
	sources := []corev1.VolumeProjection{
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "gone"}, Optional: opt,
			Items: []corev1.KeyToPath{{Key: "data-1", Path: "gone/data-1"}}}},
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "changed"}, Optional: opt}},
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Optional: opt}},
		{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "nested"}, Optional: opt,
			Items: []corev1.KeyToPath{{Key: "k", Path: "deep/er/k"}}}},
	}
	dir := t.TempDir()
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return "<none>"
		}
		return string(b)
	}
	if err := k.writeFiles(ctx, pod, dir, nil, sources); err != nil {
		t.Fatal(err)
	}
	if read("gone/data-1") != "value-1" || read("dropped") != "x" || read("deep/er/k") != "v" {
		t.Fatalf("first sync: gone %q dropped %q nested %q", read("gone/data-1"), read("dropped"), read("deep/er/k"))
	}
	cms := cs.CoreV1().ConfigMaps("ns")
	if err := cms.Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "changed", Namespace: "ns"}, Data: map[string]string{"data-1": "value-2"}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: "ns"}, Data: map[string]string{"data-3": "value-3"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Secrets("ns").Delete(ctx, "nested", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := k.writeFiles(ctx, pod, dir, nil, sources); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{"gone/data-1": "<none>", "data-1": "value-2", "dropped": "<none>", "data-3": "value-3", "deep/er/k": "<none>"} {
		if got := read(rel); got != want {
			t.Errorf("%s: %q, want %q", rel, got, want)
		}
	}
	for _, d := range []string{"gone", "deep"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !os.IsNotExist(err) {
			t.Errorf("directory %s left behind: %v", d, err)
		}
	}
}

// TestPodFilesHostsHeader: a pod's /etc/hosts starts with Kubernetes'
// header line, which is how tools tell a kubelet-managed file; a pod on the
// host's network gets the host's file unchanged.
func TestPodFilesHostsHeader(t *testing.T) {
	k := &Kubelet{cfg: Config{ClusterDNS: "10.96.0.10", ClusterDomain: "cluster.local"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "ns"},
		Spec: corev1.PodSpec{Hostname: "web-0", Subdomain: "web", HostAliases: []corev1.HostAlias{{IP: "198.51.100.7", Hostnames: []string{"foo", "bar"}}}}}
	dir := t.TempDir()
	if err := k.podFiles(pod, dir, "10.244.0.5"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# Kubernetes-managed hosts file.\n"
	if got := string(b); got[:len(want)] != want ||
		!strings.Contains(got, "10.244.0.5\tweb-0.web.ns.svc.cluster.local\tweb-0\n") || !strings.Contains(got, "198.51.100.7\tfoo\tbar\n") {
		t.Fatalf("hosts:\n%s", got)
	}
	pod.Spec.HostNetwork = true
	if err := k.podFiles(pod, dir, ""); err != nil {
		t.Fatal(err)
	}
	host, _ := os.ReadFile("/etc/hosts")
	if b, _ := os.ReadFile(filepath.Join(dir, "hosts")); !strings.HasPrefix(string(b), string(host)) {
		t.Fatalf("host network pod's hosts:\n%s", b)
	}
}
