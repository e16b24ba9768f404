package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/petrel-project/petrel/test/cluster"
)

// rssBytes is a process's resident memory.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// serviceAccountClient binds a new service account in ns to a Role with the
// given rules and returns a client that speaks with its token.
func serviceAccountClient(t *testing.T, s *cluster.Server, ns, name string, rules []rbacv1.PolicyRule) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	cs := s.Clientset()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	admin := s.RESTConfig()
	cfg := &rest.Config{Host: admin.Host, BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData, CAFile: admin.CAFile}}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The binding reaches the authorizer through its watch.
	waitFor(t, 10*time.Second, func() bool {
		_, err := sa.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil
	})
	return sa
}

// copyBomb is a JSON patch of n copy operations, each copying the whole data
// map (with every earlier copy) into it: the document doubles with each one.
func copyBomb(n int) []byte {
	var ops []map[string]string
	for i := 0; i < n; i++ {
		ops = append(ops, map[string]string{"op": "copy", "from": "/data", "path": fmt.Sprintf("/data/c%d", i)})
	}
	b, _ := json.Marshal(ops)
	return b
}

// TestPatchLimits: a service account allowed only get and patch on ConfigMaps
// once took the server from 125 MB to 12 GB with a JSON patch of 40 copy
// operations. Patches are bounded as in Kubernetes: 3 MiB of copies, 10,000
// operations, and no patched object larger than a request may be.
func TestPatchLimits(t *testing.T) {
	s := cluster.StartServer(t)
	ctx := context.Background()
	cs := s.Clientset()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cb2"},
		Data: map[string]string{"k": strings.Repeat("x", 1000)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := serviceAccountClient(t, s, "default", "patcher", []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "patch"}}})
	before := rssBytes(t, s.Pid())

	for _, n := range []int{16, 40} {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := sa.CoreV1().ConfigMaps("default").Patch(pctx, "cb2", types.JSONPatchType, copyBomb(n), metav1.PatchOptions{})
		cancel()
		if !apierrors.IsRequestEntityTooLargeError(err) {
			t.Fatalf("a JSON patch of %d copies of the data: want 413 Request Entity Too Large, got %v", n, err)
		}
	}
	if grown := rssBytes(t, s.Pid()) - before; grown > 200<<20 {
		t.Errorf("the server grew by %d MiB answering copy patches", grown>>20)
	}

	ops := func(n int) []byte {
		var b strings.Builder
		b.WriteString("[")
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"op":"test","path":"/metadata/name","value":"cb2"}`)
		}
		b.WriteString("]")
		return []byte(b.String())
	}
	if _, err := sa.CoreV1().ConfigMaps("default").Patch(ctx, "cb2", types.JSONPatchType, ops(10001), metav1.PatchOptions{}); !apierrors.IsRequestEntityTooLargeError(err) {
		t.Fatalf("a JSON patch of 10,001 operations: want 413, got %v", err)
	}
	if _, err := sa.CoreV1().ConfigMaps("default").Patch(ctx, "cb2", types.JSONPatchType, ops(10000), metav1.PatchOptions{}); err != nil {
		t.Fatalf("a JSON patch of 10,000 operations is allowed: %v", err)
	}

	// Every patch type: a result larger than a request may carry is refused
	// before it reaches etcd.
	big := strings.Repeat("y", 900<<10)
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "big"},
		Data: map[string]string{"a": big}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grow, _ := json.Marshal(map[string]any{"data": map[string]string{"b": strings.Repeat("z", 2500<<10)}})
	for _, pt := range []types.PatchType{types.MergePatchType, types.StrategicMergePatchType} {
		if _, err := cs.CoreV1().ConfigMaps("default").Patch(ctx, "big", pt, grow, metav1.PatchOptions{}); !apierrors.IsRequestEntityTooLargeError(err) {
			t.Errorf("a %s patch that makes a 3.4 MiB object: want 413, got %v", pt, err)
		}
	}

	got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "cb2", metav1.GetOptions{})
	if err != nil || len(got.Data) != 1 || len(got.Data["k"]) != 1000 {
		t.Fatalf("cb2 after the refused patches: %v (%v)", got.Data, err)
	}
}
