package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestResourceQuota: a namespace's quota counts what is there, refuses
// what would go over it with Kubernetes' message, and frees what deletions
// give back.
func TestResourceQuota(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)
	ctx := context.Background()
	kubectl(t, s, "", "create", "namespace", "q")
	// A quota is in force from the moment its create returns: a ConfigMap
	// created right after one that allows none is refused (whether or not
	// the controller has computed the quota's usage yet), never let through
	// because the admission's cache had not seen the quota.
	cs := s.Clientset()
	for i := 0; i < 5; i++ {
		ns := fmt.Sprintf("q-fresh-%d", i)
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "none"},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceSecrets: resource.MustParse("0")}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "right-after"}}, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("a Secret created right after a quota of 0 Secrets (round %d): %v, want Forbidden", i, err)
		}
	}
	// Charges made by admission stay: a NodePort Service takes the one
	// nodeport a quota allows, and a LoadBalancer Service right after it is
	// refused (a recount at the charge's status write once wrote the charge
	// away: 3 times in 8 before).
	for i := 0; i < 6; i++ {
		ns := fmt.Sprintf("q-nodeports-%d", i)
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "ports"},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceServicesNodePorts: resource.MustParse("1")}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "the quota's usage computed", 30*time.Second, func() error {
			q, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "ports", metav1.GetOptions{})
			if err != nil || q.Status.Hard == nil {
				return fmt.Errorf("status.hard not set yet (%v)", err)
			}
			return nil
		})
		svc := func(name string, typ corev1.ServiceType) error {
			_, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
			return err
		}
		if err := svc("clusterip", corev1.ServiceTypeClusterIP); err != nil {
			t.Fatal(err)
		}
		if err := svc("nodeport", corev1.ServiceTypeNodePort); err != nil {
			t.Fatal(err)
		}
		if err := svc("lb", corev1.ServiceTypeLoadBalancer); !apierrors.IsForbidden(err) {
			q, _ := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "ports", metav1.GetOptions{})
			t.Fatalf("round %d: a LoadBalancer Service past a nodeports quota of 1: %v, want Forbidden (quota status %+v)", i, err, q.Status)
		}
	}
	kubectl(t, s, "", "create", "quota", "q1", "-n", "q", "--hard=pods=2,requests.cpu=1,configmaps=3")
	poll(t, "the quota's usage computed", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "quota", "q1", "-n", "q", "-o", "jsonpath={.status.used}")
		if err != nil || !strings.Contains(out, `"pods":"0"`) || !strings.Contains(out, `"configmaps":"1"`) {
			return fmt.Errorf("%v: %s", err, out) // kube-root-ca.crt counts
		}
		return nil
	})
	run := func(name, cpu string) (string, error) {
		res := ""
		if cpu != "" {
			res = fmt.Sprintf(`,"resources":{"requests":{"cpu":%q}}`, cpu)
		}
		return s.Kubectl(ctx, "", "run", name, "-n", "q", "--image=petrel.local/testserver:1", "--overrides",
			fmt.Sprintf(`{"spec":{"containers":[{"name":%q,"image":"petrel.local/testserver:1"%s}]}}`, name, res))
	}
	if out, err := run("p1", "400m"); err != nil {
		t.Fatalf("p1: %v\n%s", err, out)
	}
	if out, err := run("nores", ""); err == nil || !strings.Contains(out, `pods "nores" is forbidden: failed quota: q1: must specify requests.cpu`) {
		t.Fatalf("a pod without a CPU request under a CPU quota: %v\n%s", err, out)
	}
	if out, err := run("p2", "400m"); err != nil {
		t.Fatalf("p2: %v\n%s", err, out)
	}
	out, err := run("p3", "100m")
	if err == nil || !strings.Contains(out, `pods "p3" is forbidden: exceeded quota: q1, requested: pods=1, used: pods=2, limited: pods=2`) {
		t.Fatalf("a third pod: %v\n%s", err, out)
	}
	mustContain(t, kubectl(t, s, "", "get", "quota", "-n", "q"), "REQUEST", "pods: 2/2", "requests.cpu: 800m/1")
	kubectl(t, s, "", "delete", "pod", "p1", "-n", "q", "--wait=false")
	poll(t, "the deletion frees a pod", 30*time.Second, func() error {
		out, err := run("p3", "100m")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	kubectl(t, s, "", "create", "configmap", "c1", "-n", "q")
	kubectl(t, s, "", "create", "configmap", "c2", "-n", "q")
	out, err = s.Kubectl(ctx, "", "create", "configmap", "c3", "-n", "q")
	if err == nil || !strings.Contains(out, "exceeded quota: q1, requested: configmaps=1, used: configmaps=3, limited: configmaps=3") {
		t.Fatalf("a fourth configmap: %v\n%s", err, out)
	}
	if out, err := s.Kubectl(ctx, "", "create", "configmap", "c4", "-n", "q", "--dry-run=server"); err == nil {
		t.Fatalf("a dry run over quota must be refused too:\n%s", out)
	}

	// count/<resource>.<group> of a kind the quota controller does not watch.
	kubectl(t, s, "", "create", "namespace", "ing")
	kubectl(t, s, "", "create", "quota", "ing", "-n", "ing", "--hard=count/ingresses.networking.k8s.io=1")
	poll(t, "the ingress count", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "quota", "ing", "-n", "ing", "-o", `jsonpath={.status.used.count/ingresses\.networking\.k8s\.io}`)
		if err != nil || out != "0" {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	kubectl(t, s, "", "create", "ingress", "one", "-n", "ing", "--rule=one.example/=web:80")
	out, err = s.Kubectl(ctx, "", "create", "ingress", "two", "-n", "ing", "--rule=two.example/=web:80")
	if err == nil || !strings.Contains(out, "exceeded quota: ing, requested: count/ingresses.networking.k8s.io=1") {
		t.Fatalf("a second ingress: %v\n%s", err, out)
	}
	kubectl(t, s, "", "delete", "ingress", "one", "-n", "ing")
	poll(t, "the deleted ingress given back", 40*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "create", "ingress", "two", "-n", "ing", "--rule=two.example/=web:80")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// A BestEffort quota counts only pods that ask for nothing.
	kubectl(t, s, "", "create", "namespace", "be")
	kubectl(t, s, "", "create", "quota", "be", "-n", "be", "--hard=pods=1", "--scopes=BestEffort")
	poll(t, "the scoped quota's usage", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "quota", "be", "-n", "be", "-o", "jsonpath={.status.used.pods}")
		if err != nil || out != "0" {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	kubectl(t, s, "", "run", "free1", "-n", "be", "--image=petrel.local/testserver:1")
	out, err = s.Kubectl(ctx, "", "run", "free2", "-n", "be", "--image=petrel.local/testserver:1")
	if err == nil || !strings.Contains(out, "exceeded quota: be") {
		t.Fatalf("a second best-effort pod: %v\n%s", err, out)
	}
	if out, err := s.Kubectl(ctx, "", "run", "sized", "-n", "be", "--image=petrel.local/testserver:1", "--overrides",
		`{"spec":{"containers":[{"name":"sized","image":"petrel.local/testserver:1","resources":{"requests":{"cpu":"10m"}}}]}}`); err != nil {
		t.Fatalf("a pod with requests is outside the BestEffort quota: %v\n%s", err, out)
	}
}
