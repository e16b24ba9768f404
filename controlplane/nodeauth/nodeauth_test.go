package nodeauth

import (
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/rbac"
)

func testAuthorizer(t *testing.T) *Authorizer {
	t.Helper()
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{PodsByNodeIndex: PodsByNode})
	pvcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	add := func(idx cache.Indexer, obj interface{}) {
		if err := idx.Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	add(pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "mine"}, Spec: corev1.PodSpec{
		NodeName: "n1", ServiceAccountName: "app",
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
		Volumes: []corev1.Volume{
			{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vol-secret"}}},
			{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}}}}}},
			{Name: "c", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
		},
		Containers: []corev1.Container{{Name: "c", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env-cm"}}}},
			Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "env-secret"}, Key: "k"}}}}}},
	}})
	add(pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "theirs"}, Spec: corev1.PodSpec{NodeName: "n2",
		Volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "their-secret"}}}}}})
	add(pvcs, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-1"}})
	ings := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	other := "nginx"
	add(ings, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "site"},
		Spec: networkingv1.IngressSpec{TLS: []networkingv1.IngressTLS{{Hosts: []string{"a.example"}, SecretName: "site-tls"}}}})
	add(ings, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "theirs"},
		Spec: networkingv1.IngressSpec{IngressClassName: &other, TLS: []networkingv1.IngressTLS{{SecretName: "nginx-tls"}}}})
	return New(pods, corelisters.NewPersistentVolumeClaimLister(pvcs)).WithIngresses(ings, func() bool { return true })
}

func TestAuthorize(t *testing.T) {
	a := testAuthorizer(t)
	req := func(verb, group, resource, sub, ns, name string) rbac.Attributes {
		return rbac.Attributes{User: "system:node:n1", Groups: []string{NodesGroup}, Verb: verb, ResourceRequest: true,
			APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
	}
	list := func(resource, ns, selector string) rbac.Attributes {
		r := req("list", "", resource, "", ns, "")
		r.FieldSelector = selector
		return r
	}
	for _, row := range []struct {
		name  string
		attrs rbac.Attributes
		want  bool
		why   string
	}{
		{"secret of a volume", req("get", "", "secrets", "", "ns", "vol-secret"), true, ""},
		{"secret of env", req("get", "", "secrets", "", "ns", "env-secret"), true, ""},
		{"image pull secret", req("get", "", "secrets", "", "ns", "pull"), true, ""},
		{"another node's pod's secret", req("get", "", "secrets", "", "ns", "their-secret"), false, "no relationship"},
		{"same name, other namespace", req("get", "", "secrets", "", "other", "vol-secret"), false, "no relationship"},
		{"list secrets", list("secrets", "ns", ""), false, "not list them"},
		{"watch one secret by name", func() rbac.Attributes {
			r := list("secrets", "ns", "metadata.name=vol-secret")
			r.Verb = "watch"
			return r
		}(), true, ""},
		{"delete a secret", req("delete", "", "secrets", "", "ns", "vol-secret"), false, "only read"},
		// Every node serves Ingresses: their TLS Secrets, one by name.
		{"TLS secret of an Ingress", req("get", "", "secrets", "", "web", "site-tls"), true, ""},
		{"watch the TLS secret by name", func() rbac.Attributes {
			r := list("secrets", "web", "metadata.name=site-tls")
			r.Verb = "watch"
			return r
		}(), true, ""},
		{"TLS secret of another class's Ingress", req("get", "", "secrets", "", "web", "nginx-tls"), false, "no relationship"},
		{"list the Ingress's namespace's secrets", list("secrets", "web", ""), false, "not list them"},
		{"TLS secret name in another namespace", req("get", "", "secrets", "", "ns", "site-tls"), false, "no relationship"},
		{"ingresses", func() rbac.Attributes { r := list("ingresses", "", ""); r.APIGroup = "networking.k8s.io"; return r }(), true, ""},
		{"projected configmap", req("get", "", "configmaps", "", "ns", "kube-root-ca.crt"), true, ""},
		{"envFrom configmap", req("get", "", "configmaps", "", "ns", "env-cm"), true, ""},
		{"unrelated configmap", req("get", "", "configmaps", "", "ns", "other"), false, "no relationship"},
		{"its pvc", req("get", "", "persistentvolumeclaims", "", "ns", "data"), true, ""},
		{"its pv", req("get", "", "persistentvolumes", "", "", "pv-1"), true, ""},
		{"another pv", req("get", "", "persistentvolumes", "", "", "pv-2"), false, "no relationship"},
		{"token of its pod's SA", req("create", "", "serviceaccounts", "token", "ns", "app"), true, ""},
		{"token of another SA", req("create", "", "serviceaccounts", "token", "ns", "default"), false, "no relationship"},
		{"get its pod", req("get", "", "pods", "", "ns", "mine"), true, ""},
		{"get another node's pod", req("get", "", "pods", "", "ns", "theirs"), false, "no relationship"},
		{"list its pods", list("pods", "", "spec.nodeName=n1"), true, ""},
		// Every pod: the node enforces NetworkPolicy, which needs them all.
		{"list pods of another node", list("pods", "", "spec.nodeName=n2"), true, ""},
		{"list every pod", list("pods", "", ""), true, ""},
		{"pod status", req("patch", "", "pods", "status", "ns", "mine"), true, ""},
		{"pod delete (NodeRestriction decides)", req("delete", "", "pods", "", "ns", "mine"), true, ""},
		{"pod update", req("update", "", "pods", "", "ns", "mine"), false, ""},
		{"its lease", req("update", "coordination.k8s.io", "leases", "", "kube-node-lease", "n1"), true, ""},
		{"another node's lease", req("update", "coordination.k8s.io", "leases", "", "kube-node-lease", "n2"), false, "same name"},
		{"lease elsewhere", req("get", "coordination.k8s.io", "leases", "", "kube-system", "n1"), false, "kube-node-lease"},
		{"nodes", list("nodes", "", ""), true, ""},
		{"services", list("services", "", ""), true, ""},
		{"endpointslices", list("endpointslices", "", ""), false, ""},
		{"endpointslices (discovery)", func() rbac.Attributes { r := list("endpointslices", "", ""); r.APIGroup = "discovery.k8s.io"; return r }(), true, ""},
		{"events", req("create", "", "events", "", "ns", ""), true, ""},
		{"deployments", req("list", "apps", "deployments", "", "ns", ""), false, ""},
		{"csr", req("create", "certificates.k8s.io", "certificatesigningrequests", "", "", ""), true, ""},
	} {
		t.Run(row.name, func(t *testing.T) {
			got, why := a.Authorize("n1", row.attrs)
			if got != row.want || !strings.Contains(why, row.why) {
				t.Errorf("Authorize = %v %q, want %v %q", got, why, row.want, row.why)
			}
		})
	}
}

func TestNodeName(t *testing.T) {
	if n, ok := NodeName("system:node:a", []string{"system:authenticated", NodesGroup}); !ok || n != "a" {
		t.Errorf("NodeName = %q %v", n, ok)
	}
	if _, ok := NodeName("system:node:a", []string{"system:authenticated"}); ok {
		t.Error("a user outside system:nodes is not a node")
	}
	if _, ok := NodeName("system:node:", []string{NodesGroup}); ok {
		t.Error("an empty node name is not a node")
	}
}

func TestAdmission(t *testing.T) {
	pod := func(node string, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "u1", Annotations: annotations}, Spec: corev1.PodSpec{NodeName: node}}
	}
	node := func(name string, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
	}
	bound := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", Name: "p", UID: "u1"}}}
	mirror := map[string]string{mirrorPodAnnotation: "x"}
	unreachable := corev1.Taint{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute}
	own := corev1.Taint{Key: "node.petrel.io/no-container-runtime", Effect: corev1.TaintEffectNoSchedule}
	for _, row := range []struct {
		name string
		err  error
		want string
	}{
		{"create a pod", AdmitCreate("n1", "pods", "", pod("n1", nil), nil), "mirror pods"},
		{"create a mirror pod", AdmitCreate("n1", "pods", "", pod("n1", mirror), nil), ""},
		{"mirror pod elsewhere", AdmitCreate("n1", "pods", "", pod("n2", mirror), nil), "spec.nodeName set to itself"},
		{"register itself", AdmitCreate("n1", "nodes", "", node("n1", map[string]string{"kubernetes.io/hostname": "n1"}), nil), ""},
		{"register another", AdmitCreate("n1", "nodes", "", node("n2", nil), nil), "not allowed to modify node"},
		{"restricted label", AdmitCreate("n1", "nodes", "", node("n1", map[string]string{"node-restriction.kubernetes.io/gpu": "x"}), nil), "labels"},
		{"its lease", AdmitCreate("n1", "leases", "", &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, nil), ""},
		{"another lease", AdmitCreate("n1", "leases", "", &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n2"}}, nil), "same name"},
		{"token for its pod", AdmitCreate("n1", "serviceaccounts", "token", bound, pod("n1", nil)), ""},
		{"token for another node's pod", AdmitCreate("n1", "serviceaccounts", "token", bound, pod("n2", nil)), "different node"},
		{"unbound token", AdmitCreate("n1", "serviceaccounts", "token", &authenticationv1.TokenRequest{}, nil), "not bound"},
		{"status of its pod", AdmitUpdate("n1", "pods", "status", pod("n1", nil), pod("n1", nil)), ""},
		{"status of another's pod", AdmitUpdate("n1", "pods", "status", pod("n2", nil), pod("n2", nil)), "spec.nodeName set to itself"},
		{"update itself", AdmitUpdate("n1", "nodes", "status", node("n1", nil), node("n1", nil)), ""},
		{"update another", AdmitUpdate("n1", "nodes", "", node("n2", nil), node("n2", nil)), "not allowed to modify node"},
		{"drop its own taint", AdmitUpdate("n1", "nodes", "", node("n1", nil, unreachable), node("n1", nil, unreachable, own)), ""},
		{"drop unreachable", AdmitUpdate("n1", "nodes", "", node("n1", nil), node("n1", nil, unreachable)), "taints"},
		{"set a restricted label", AdmitUpdate("n1", "nodes", "", node("n1", map[string]string{"node-restriction.kubernetes.io/a": "b"}), node("n1", nil)), "labels"},
		{"delete its pod", AdmitDelete("n1", "pods", pod("n1", nil)), ""},
		{"delete another's pod", AdmitDelete("n1", "pods", pod("n2", nil)), "spec.nodeName set to itself"},
		{"delete another node", AdmitDelete("n1", "nodes", node("n2", nil)), "not allowed"},
	} {
		t.Run(row.name, func(t *testing.T) {
			if row.want == "" {
				if row.err != nil {
					t.Fatalf("refused: %v", row.err)
				}
				return
			}
			if row.err == nil || !strings.Contains(row.err.Error(), row.want) {
				t.Fatalf("got %v, want an error with %q", row.err, row.want)
			}
		})
	}
}
