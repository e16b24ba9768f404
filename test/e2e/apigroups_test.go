package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	jose "gopkg.in/go-jose/go-jose.v2"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/images"
)

// TestBuiltinAPIGroups covers the kinds of issue 21 item 5 on one real
// single-node cluster: ReplicationControllers scaled by kubectl and kept by
// their controller, PodTemplates, pods/proxy and services/proxy to a real
// pod serving HTTP, service account issuer discovery verifying a token's
// signature with the JWKS, PriorityClass admission, ephemeral containers
// and the flowcontrol, storage and node kinds in discovery and tables.
func TestBuiltinAPIGroups(t *testing.T) {
	u := startPodCluster(t)
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const ns = "apigroups"
	kubectl(t, u.Server, "", "create", "namespace", ns)

	t.Run("discovery and tables", func(t *testing.T) {
		out := kubectl(t, u.Server, "", "api-resources")
		for _, want := range []string{"replicationcontrollers", "podtemplates", "priorityclasses", "runtimeclasses", "storageclasses",
			"csidrivers", "csinodes", "volumeattachments", "csistoragecapacities", "flowschemas", "prioritylevelconfigurations"} {
			mustContain(t, out, want)
		}
		// Created at start, as Kubernetes does, and shown with its columns.
		mustContain(t, kubectl(t, u.Server, "", "get", "priorityclasses"), "VALUE", "GLOBAL-DEFAULT", "system-node-critical", "2000001000", "system-cluster-critical")
		mustContain(t, kubectl(t, u.Server, "", "get", "flowschemas"), "PRIORITYLEVEL", "MATCHINGPRECEDENCE", "exempt", "catch-all", "system-leader-election")
		mustContain(t, kubectl(t, u.Server, "", "get", "prioritylevelconfigurations"), "NOMINALCONCURRENCYSHARES", "workload-low", "Limited")
		kubectl(t, u.Server, `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: e2e-local}
provisioner: example.com/local
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: e2e-runc}
handler: runc
`, "apply", "-f", "-")
		mustContain(t, kubectl(t, u.Server, "", "get", "storageclass", "e2e-local"), "PROVISIONER", "example.com/local", "Delete", "Immediate")
		mustContain(t, kubectl(t, u.Server, "", "get", "runtimeclass", "e2e-runc"), "HANDLER", "runc")
		mustContain(t, kubectl(t, u.Server, "", "explain", "flowschema.spec.priorityLevelConfiguration"), "name")
		// A refused object names its field.
		_, err := cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e-bad"}}, metav1.CreateOptions{})
		wantInvalid(t, err, "provisioner")
		kubectl(t, u.Server, "", "delete", "storageclass", "e2e-local")
		kubectl(t, u.Server, "", "delete", "runtimeclass", "e2e-runc")
	})

	t.Run("ReplicationController scale up and down", func(t *testing.T) {
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: ReplicationController
metadata: {name: web, namespace: %s}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: rcweb}}
    spec:
      containers:
      - name: web
        image: %s
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /hostname, port: 8080}, periodSeconds: 1}
`, ns, images.TestServer), "apply", "-f", "-")
		rc, err := cs.CoreV1().ReplicationControllers(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Defaulted from the template, as Kubernetes does.
		if rc.Spec.Selector["app"] != "rcweb" || rc.Labels["app"] != "rcweb" {
			t.Fatalf("selector %v, labels %v", rc.Spec.Selector, rc.Labels)
		}
		waitRCReady(ctx, t, cs, ns, "web", 2)
		mustContain(t, kubectl(t, u.Server, "", "get", "rc", "-n", ns, "-o", "wide"), "DESIRED", "CURRENT", "READY", "web", "app=rcweb")
		mustContain(t, kubectl(t, u.Server, "", "scale", "rc", "web", "-n", ns, "--replicas=3"), "scaled")
		waitRCReady(ctx, t, cs, ns, "web", 3)
		kubectl(t, u.Server, "", "scale", "rc", "web", "-n", ns, "--replicas=1")
		waitRCReady(ctx, t, cs, ns, "web", 1)
		mustContain(t, kubectl(t, u.Server, "", "describe", "rc", "web", "-n", ns), "Replicas:", "1 current / 1 desired", "app=rcweb")
		// Every pod is the RC's, by a controller reference.
		pods := rcPods(ctx, t, cs, ns)
		ref := metav1.GetControllerOf(&pods[0])
		if ref == nil || ref.Kind != "ReplicationController" || ref.APIVersion != "v1" || ref.UID != rc.UID {
			t.Fatalf("pod %s controller %+v", pods[0].Name, ref)
		}
	})

	t.Run("PodTemplate round trip", func(t *testing.T) {
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: PodTemplate
metadata: {name: tmpl, namespace: %s}
template:
  metadata: {labels: {role: tmpl}}
  spec:
    containers: [{name: c, image: %s}]
`, ns, images.TestServer), "apply", "-f", "-")
		pt, err := cs.CoreV1().PodTemplates(ns).Get(ctx, "tmpl", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := pt.Template.Spec.Containers; len(c) != 1 || c[0].Image != images.TestServer || pt.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
			t.Fatalf("template %+v", pt.Template.Spec)
		}
		pt.Template.Labels["role"] = "changed"
		if _, err := cs.CoreV1().PodTemplates(ns).Update(ctx, pt, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		mustContain(t, kubectl(t, u.Server, "", "get", "podtemplates", "-n", ns), "CONTAINERS", "IMAGES", "POD LABELS", "role=changed")
		kubectl(t, u.Server, "", "delete", "podtemplate", "tmpl", "-n", ns)
		if _, err := cs.CoreV1().PodTemplates(ns).Get(ctx, "tmpl", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("after delete: %v", err)
		}
	})

	t.Run("pods/proxy and services/proxy", func(t *testing.T) {
		kubectl(t, u.Server, "", "scale", "rc", "web", "-n", ns, "--replicas=2")
		waitRCReady(ctx, t, cs, ns, "web", 2)
		kubectl(t, u.Server, "", "expose", "rc", "web", "-n", ns, "--port=80", "--target-port=8080", "--name=web")
		pods := rcPods(ctx, t, cs, ns)
		names := map[string]bool{}
		for _, p := range pods {
			names[p.Name] = true
		}
		pod := pods[0].Name
		raw := func(r *rest.Request) (string, error) {
			b, err := r.DoRaw(ctx)
			return string(b), err
		}
		core := cs.CoreV1().RESTClient()
		// name:port with a path; the pod's hostname is its name.
		if got, err := raw(core.Get().Namespace(ns).Resource("pods").Name(pod + ":8080").SubResource("proxy").Suffix("hostname")); err != nil || got != pod {
			t.Fatalf("GET pods/%s:8080/proxy/hostname: %q, %v", pod, got, err)
		}
		// No port: the first container port; a POST with a body.
		if got, err := raw(core.Post().Namespace(ns).Resource("pods").Name(pod).SubResource("proxy").Suffix("echo").Body([]byte("posted body"))); err != nil || got != "posted body" {
			t.Fatalf("POST pods/%s/proxy/echo: %q, %v", pod, got, err)
		}
		// The query goes along; PUT and DELETE pass too.
		if got, err := raw(core.Put().Namespace(ns).Resource("pods").Name("http:"+pod+":8080").SubResource("proxy").Suffix("echo").Param("msg", "via-put")); err != nil || got != "via-put" {
			t.Fatalf("PUT pods/http:%s:8080/proxy/echo?msg=: %q, %v", pod, got, err)
		}
		if got, err := raw(core.Delete().Namespace(ns).Resource("pods").Name(pod).SubResource("proxy").Suffix("echo").Param("msg", "deleted")); err != nil || got != "deleted" {
			t.Fatalf("DELETE pods/%s/proxy/echo: %q, %v", pod, got, err)
		}
		// An absolute link in an HTML answer comes back through the proxy.
		want := fmt.Sprintf(`<a href="/api/v1/namespaces/%s/pods/%s:8080/proxy/hostname">`, ns, pod)
		if got, err := raw(core.Get().Namespace(ns).Resource("pods").Name(pod + ":8080").SubResource("proxy").Suffix("page")); err != nil || !strings.Contains(got, want) {
			t.Fatalf("GET pods/%s:8080/proxy/page: %q, %v; want a link rewritten to %s", pod, got, err, want)
		}
		// A bare .../proxy is redirected to .../proxy/, which client-go follows.
		if got, err := raw(core.Get().Namespace(ns).Resource("pods").Name(pod).SubResource("proxy")); err != nil || strings.TrimSpace(got) != pod {
			t.Fatalf("GET pods/%s/proxy: %q, %v", pod, got, err)
		}
		// kubectl reads through it too.
		mustContain(t, kubectl(t, u.Server, "", "get", "--raw", fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:8080/proxy/hostname", ns, pod)), pod)
		// services/proxy: by port number and by the Service's port, each
		// answer from one of the ready pods.
		heard := map[string]bool{}
		for i := 0; i < 20; i++ {
			got, err := raw(core.Get().Namespace(ns).Resource("services").Name("web:80").SubResource("proxy").Suffix("hostname"))
			if err != nil || !names[got] {
				t.Fatalf("GET services/web:80/proxy/hostname: %q, %v (pods %v)", got, err, names)
			}
			heard[got] = true
		}
		if len(heard) != 2 {
			t.Errorf("services/proxy reached %v, want both pods", heard)
		}
		if got, err := raw(core.Post().Namespace(ns).Resource("services").Name("web").SubResource("proxy").Suffix("echo").Body([]byte("svc"))); err != nil || got != "svc" {
			t.Fatalf("POST services/web/proxy/echo: %q, %v", got, err)
		}
		// nodes/proxy reaches the node server with the API server's client
		// certificate: the container log as pods/log reads it, and the node
		// server's own 404 (not the API server's Status) for a path it lacks.
		node := pods[0].Spec.NodeName
		viaNode, err := raw(core.Get().Resource("nodes").Name(node).SubResource("proxy").Suffix("containerLogs", ns, pod, "web"))
		if err != nil {
			t.Fatalf("nodes/%s/proxy/containerLogs: %v", node, err)
		}
		viaPod, err := raw(core.Get().Namespace(ns).Resource("pods").Name(pod).SubResource("log"))
		if err != nil || viaNode != viaPod {
			t.Fatalf("container log through nodes/proxy %q, through pods/log %q (%v)", viaNode, viaPod, err)
		}
		// The node's /var/log, as the kubelet lists it (a conformance test reads it).
		if got, err := raw(core.Get().AbsPath(fmt.Sprintf("/api/v1/nodes/%s/proxy/logs/", node))); err != nil || !strings.Contains(got, "<a href=") {
			t.Fatalf("nodes/%s/proxy/logs/: %q, %v", node, got, err)
		}
		// client-go keeps a body that is no Status in the error's causes.
		_, err = raw(core.Get().Resource("nodes").Name(node).SubResource("proxy").Suffix("no-such-path"))
		if st, ok := err.(apierrors.APIStatus); !ok || st.Status().Code != 404 || !strings.Contains(fmt.Sprintf("%+v", st.Status().Details), "404 page not found") {
			t.Fatalf("nodes/%s/proxy/no-such-path: %#v", node, err)
		}
		_, err = raw(core.Get().Namespace(ns).Resource("services").Name("web:81").SubResource("proxy"))
		if !apierrors.IsServiceUnavailable(err) {
			t.Fatalf("a port the Service does not have: %v", err)
		}
		_, err = raw(core.Get().Namespace(ns).Resource("pods").Name("nope:8080").SubResource("proxy").Suffix("x"))
		if !apierrors.IsNotFound(err) {
			t.Fatalf("a pod that does not exist: %v", err)
		}
	})

	t.Run("service account issuer discovery", func(t *testing.T) {
		pods := rcPods(ctx, t, cs, ns)
		pod := pods[0]
		exp := int64(3600)
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{"oidc-discovery-test", "https://kubernetes.default.svc.cluster.local"}, ExpirationSeconds: &exp,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The service account reads the documents (the default binding of
		// system:service-account-issuer-discovery to system:serviceaccounts).
		saCfg := rest.AnonymousClientConfig(u.RESTConfig())
		saCfg.BearerToken = tr.Status.Token
		saClient, err := kubernetes.NewForConfig(saCfg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := saClient.CoreV1().RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
		if err != nil {
			t.Fatalf("openid-configuration: %v", err)
		}
		var conf struct {
			Issuer  string   `json:"issuer"`
			JWKSURI string   `json:"jwks_uri"`
			Algs    []string `json:"id_token_signing_alg_values_supported"`
		}
		if err := json.Unmarshal(b, &conf); err != nil || conf.Issuer == "" || !strings.HasSuffix(conf.JWKSURI, "/openid/v1/jwks") {
			t.Fatalf("openid-configuration %s: %v", b, err)
		}
		b, err = saClient.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
		if err != nil {
			t.Fatalf("jwks: %v", err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 {
			t.Fatalf("jwks %s: %v", b, err)
		}
		// The token verifies against the published key, as a relying party
		// (the conformance test's go-oidc) checks it.
		var claims jwt.MapClaims
		tok, err := jwt.ParseWithClaims(tr.Status.Token, &claims, func(tok *jwt.Token) (interface{}, error) {
			kid, _ := tok.Header["kid"].(string)
			keys := set.Key(kid)
			if len(keys) != 1 {
				return nil, fmt.Errorf("no key %q in the JWKS", kid)
			}
			return keys[0].Key, nil
		}, jwt.WithValidMethods(conf.Algs), jwt.WithIssuer(conf.Issuer), jwt.WithAudience("oidc-discovery-test"))
		if err != nil || !tok.Valid {
			t.Fatalf("verifying the token with the JWKS: %v", err)
		}
		// A token of another signer does not verify: tamper with the payload.
		parts := strings.Split(tr.Status.Token, ".")
		forged := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
		if _, err := jwt.Parse(forged, func(*jwt.Token) (interface{}, error) { return set.Keys[0].Key, nil }); err == nil {
			t.Fatal("a changed token verified")
		}
		// TokenReview: the credential ID and the pod and node it is bound to.
		rev, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token}}, metav1.CreateOptions{})
		if err != nil || !rev.Status.Authenticated {
			t.Fatalf("TokenReview: %+v, %v", rev.Status, err)
		}
		x := rev.Status.User.Extra
		if id := x["authentication.kubernetes.io/credential-id"]; len(id) != 1 || !strings.HasPrefix(id[0], "JTI=") {
			t.Errorf("credential-id %v", id)
		}
		node, err := cs.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{"pod-name": pod.Name, "pod-uid": string(pod.UID), "node-name": node.Name, "node-uid": string(node.UID)} {
			if got := x["authentication.kubernetes.io/"+k]; len(got) != 1 || got[0] != want {
				t.Errorf("extra %s = %v, want %s", k, got, want)
			}
		}
		// Without credentials the documents are not served.
		anon, err := kubernetes.NewForConfig(rest.AnonymousClientConfig(u.RESTConfig()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := anon.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx); err == nil {
			t.Fatal("an anonymous client read the JWKS")
		}
	})

	t.Run("PriorityClass admission", func(t *testing.T) {
		if _, err := cs.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e-high"}, Value: 1000}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cs.SchedulingV1().PriorityClasses().Delete(ctx, "e2e-high", metav1.DeleteOptions{}) }()
		_, err := cs.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e-huge"}, Value: 2000000000}, metav1.CreateOptions{})
		wantInvalid(t, err, "value")
		pod := func(name, class string, prio *int32) *corev1.Pod {
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{PriorityClassName: class, Priority: prio,
				NodeName:   "nowhere", // never runs: admission is what is tested
				Containers: []corev1.Container{{Name: "c", Image: images.TestServer}}}}
		}
		for class, want := range map[string]int32{"e2e-high": 1000, "system-cluster-critical": 2000000000, "": 0} {
			name := "prio-" + strings.TrimPrefix(strings.ReplaceAll(class, "system-", "sys-"), "e2e-")
			if class == "" {
				name = "prio-none"
			}
			p, err := cs.CoreV1().Pods(ns).Create(ctx, pod(name, class, nil), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("pod with class %q: %v", class, err)
			}
			if p.Spec.Priority == nil || *p.Spec.Priority != want || p.Spec.PreemptionPolicy == nil {
				t.Fatalf("pod with class %q: priority %v, preemptionPolicy %v", class, p.Spec.Priority, p.Spec.PreemptionPolicy)
			}
			_ = cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}
		_, err = cs.CoreV1().Pods(ns).Create(ctx, pod("prio-unknown", "nope", nil), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "no PriorityClass with name nope was found") {
			t.Fatalf("unknown class: %v", err)
		}
		wrong := int32(5)
		_, err = cs.CoreV1().Pods(ns).Create(ctx, pod("prio-wrong", "e2e-high", &wrong), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("a priority the pod sets itself: %v", err)
		}
	})

	t.Run("a pod of higher priority preempts a lower one on a real node", func(t *testing.T) {
		if _, err := cs.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e-preemptor"}, Value: 100000}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cs.SchedulingV1().PriorityClasses().Delete(ctx, "e2e-preemptor", metav1.DeleteOptions{}) }()
		// Each asks for 70 % of the CPU the node has left: both cannot run.
		node, err := cs.CoreV1().Nodes().Get(ctx, u.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		free := node.Status.Allocatable.Cpu().MilliValue()
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + u.NodeName})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				for _, c := range p.Spec.Containers {
					free -= c.Resources.Requests.Cpu().MilliValue()
				}
			}
		}
		ask := resource.MustParse(fmt.Sprintf("%dm", free*7/10))
		pod := func(name, class string) *corev1.Pod {
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{PriorityClassName: class,
				TerminationGracePeriodSeconds: ptr.To(int64(1)),
				Containers:                    []corev1.Container{{Name: "c", Image: images.TestServer, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: ask}}}}}}
		}
		// The victim's finalizer keeps it in the API once deleted, so that
		// the test can read the conditions it was left with.
		const finalizer = "e2e.petrel.io/hold"
		victim := pod("victim", "")
		victim.Finalizers = []string{finalizer}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, victim, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "the victim running", 60*time.Second, func() error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("%v %v", err, p.Status.Phase)
			}
			return nil
		})
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod("preemptor", "e2e-preemptor"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The scheduler's DisruptionTarget survives the node's status
		// writes that its own patch set off (the node rebuilt the
		// conditions and wrote it away: a conformance failure).
		marked := func() error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "PreemptionByScheduler" && p.DeletionTimestamp != nil {
					return nil
				}
			}
			return fmt.Errorf("deleted %v, conditions %+v", p.DeletionTimestamp != nil, p.Status.Conditions)
		}
		poll(t, "the victim deleted and marked DisruptionTarget", 60*time.Second, marked)
		for range 4 {
			time.Sleep(500 * time.Millisecond)
			if err := marked(); err != nil {
				t.Fatalf("the victim lost its DisruptionTarget: %v", err)
			}
		}
		if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "victim", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{}); err != nil {
			t.Fatalf("release the victim: %v", err)
		}
		poll(t, "the victim evicted and the preemptor running in its place", 90*time.Second, func() error {
			if _, err := cs.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("victim still there (%v)", err)
			}
			p, err := cs.CoreV1().Pods(ns).Get(ctx, "preemptor", metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning || p.Spec.NodeName != u.NodeName {
				return fmt.Errorf("preemptor: %v %s on %q", err, p.Status.Phase, p.Spec.NodeName)
			}
			return nil
		})
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=Preempted,involvedObject.name=victim"})
		if err != nil || len(evs.Items) == 0 {
			t.Fatalf("no Preempted event for the victim: %v", err)
		}
		_ = cs.CoreV1().Pods(ns).Delete(ctx, "preemptor", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})

	t.Run("RuntimeClass admission", func(t *testing.T) {
		kubectl(t, u.Server, `apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: e2e-overhead}
handler: runc
overhead: {podFixed: {cpu: 10m}}
scheduling:
  tolerations: [{key: e2e-rc, operator: Exists}]
`, "apply", "-f", "-")
		defer kubectl(t, u.Server, "", "delete", "runtimeclass", "e2e-overhead")
		class := "e2e-overhead"
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "rtc"}, Spec: corev1.PodSpec{RuntimeClassName: &class, NodeName: "nowhere",
			Containers: []corev1.Container{{Name: "c", Image: images.TestServer}}}}
		got, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = cs.CoreV1().Pods(ns).Delete(ctx, "rtc", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		}()
		if q := got.Spec.Overhead[corev1.ResourceCPU]; q.String() != "10m" || !hasTolerationKey(got.Spec.Tolerations, "e2e-rc") {
			t.Fatalf("overhead %v, tolerations %v", got.Spec.Overhead, got.Spec.Tolerations)
		}
		nope := "nope"
		pod.Name, pod.Spec.RuntimeClassName = "rtc-unknown", &nope
		_, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `RuntimeClass "nope" not found`) {
			t.Fatalf("unknown RuntimeClass: %v", err)
		}
	})

	t.Run("ephemeral containers", func(t *testing.T) {
		p := rcPods(ctx, t, cs, ns)[0]
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: images.TestServer}, TargetContainerName: "web"})
		got, err := cs.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, p.Name, &p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.EphemeralContainers) != 1 || got.Spec.EphemeralContainers[0].TerminationMessagePolicy == "" {
			t.Fatalf("ephemeral containers %+v", got.Spec.EphemeralContainers)
		}
		got.Spec.EphemeralContainers[0].Image = "other"
		_, err = cs.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, p.Name, got, metav1.UpdateOptions{})
		wantInvalid(t, err, "spec.ephemeralContainers")
	})

	t.Run("RC releases a relabelled pod and adopts it back", func(t *testing.T) {
		rc, err := cs.CoreV1().ReplicationControllers(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := int(*rc.Spec.Replicas)
		p := rcPods(ctx, t, cs, ns)[0].Name
		kubectl(t, u.Server, "", "label", "pod", p, "-n", ns, "app=released", "--overwrite")
		controller := func() (*metav1.OwnerReference, error) {
			pod, err := cs.CoreV1().Pods(ns).Get(ctx, p, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return metav1.GetControllerOf(pod), nil
		}
		poll(t, "the relabelled pod released and replaced", 60*time.Second, func() error {
			if ref, err := controller(); err != nil || ref != nil {
				return fmt.Errorf("controller %v, %v", ref, err)
			}
			if n := len(rcPods(ctx, t, cs, ns)); n != want {
				return fmt.Errorf("%d matching pods, want %d", n, want)
			}
			return nil
		})
		kubectl(t, u.Server, "", "label", "pod", p, "-n", ns, "app=rcweb", "--overwrite")
		poll(t, "the pod adopted back and the surplus removed", 60*time.Second, func() error {
			if ref, err := controller(); err != nil || ref == nil || ref.UID != rc.UID {
				return fmt.Errorf("controller %v, %v", ref, err)
			}
			if n := len(rcPods(ctx, t, cs, ns)); n != want {
				return fmt.Errorf("%d matching pods, want %d", n, want)
			}
			return nil
		})
	})

	t.Run("RC reports a quota's refusal as ReplicaFailure", func(t *testing.T) {
		const qns = "apigroups-quota"
		kubectl(t, u.Server, "", "create", "namespace", qns)
		defer func() { _ = cs.CoreV1().Namespaces().Delete(ctx, qns, metav1.DeleteOptions{}) }()
		// Two pods for an RC of three, as the conformance test asks: the
		// pods' status writes as they start must not recount the quota from
		// caches that have not seen the second pod (that let the third in).
		kubectl(t, u.Server, "", "create", "quota", "pods", "-n", qns, "--hard=pods=2")
		poll(t, "the quota's status", 30*time.Second, func() error {
			q, err := cs.CoreV1().ResourceQuotas(qns).Get(ctx, "pods", metav1.GetOptions{})
			if err != nil || q.Status.Hard.Pods().Value() != 2 || q.Status.Used == nil {
				return fmt.Errorf("quota status %+v, %v", q.Status, err)
			}
			return nil
		})
		kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: ReplicationController
metadata: {name: over, namespace: %s}
spec:
  replicas: 3
  template:
    metadata: {labels: {app: over}}
    spec:
      containers: [{name: c, image: %s}]
`, qns, images.TestServer), "apply", "-f", "-")
		failure := func() (*corev1.ReplicationControllerCondition, error) {
			rc, err := cs.CoreV1().ReplicationControllers(qns).Get(ctx, "over", metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			if rc.Status.ObservedGeneration < rc.Generation {
				return nil, fmt.Errorf("generation %d not observed", rc.Generation)
			}
			for _, c := range rc.Status.Conditions {
				if c.Type == corev1.ReplicationControllerReplicaFailure {
					return &c, nil
				}
			}
			return nil, nil
		}
		poll(t, "the ReplicaFailure condition", 60*time.Second, func() error {
			c, err := failure()
			if err != nil || c == nil || c.Reason != "FailedCreate" || !strings.Contains(c.Message, "exceeded quota") {
				pods, _ := cs.CoreV1().Pods(qns).List(ctx, metav1.ListOptions{})
				q, _ := cs.CoreV1().ResourceQuotas(qns).Get(ctx, "pods", metav1.GetOptions{})
				return fmt.Errorf("condition %+v, %v (%d pods, quota status %+v)", c, err, len(pods.Items), q.Status)
			}
			return nil
		})
		// The pods start meanwhile (status writes); the quota holds and the
		// condition stays.
		time.Sleep(3 * time.Second)
		if c, err := failure(); err != nil || c == nil {
			t.Fatalf("the ReplicaFailure condition went: %+v, %v", c, err)
		}
		if pods, err := cs.CoreV1().Pods(qns).List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) != 2 {
			t.Fatalf("%d pods under a quota of 2 (%v)", len(pods.Items), err)
		}
		kubectl(t, u.Server, "", "scale", "rc", "over", "-n", qns, "--replicas=0")
		poll(t, "the ReplicaFailure condition gone", 60*time.Second, func() error {
			if c, err := failure(); err != nil || c != nil {
				return fmt.Errorf("condition %+v, %v", c, err)
			}
			return nil
		})
	})

	t.Run("RC deletion removes its pods", func(t *testing.T) {
		kubectl(t, u.Server, "", "delete", "rc", "web", "-n", ns)
		poll(t, "the RC's pods to go", 60*time.Second, func() error {
			if pods := rcPods(ctx, t, cs, ns); len(pods) > 0 {
				return fmt.Errorf("%d pods left", len(pods))
			}
			return nil
		})
	})
}

func hasTolerationKey(ts []corev1.Toleration, key string) bool {
	for _, t := range ts {
		if t.Key == key {
			return true
		}
	}
	return false
}

// wantInvalid checks that err is a 422 naming field.
func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want 422 Invalid on %s, got %v", field, err)
	}
	st, ok := err.(apierrors.APIStatus)
	if !ok || st.Status().Details == nil {
		t.Fatalf("no details in %v", err)
	}
	for _, c := range st.Status().Details.Causes {
		if c.Field == field {
			return
		}
	}
	t.Fatalf("want a cause on %s, got %+v", field, st.Status().Details.Causes)
}

// rcPods are the live pods of the RC "web" (app=rcweb).
func rcPods(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=rcweb"})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// waitRCReady waits until the RC has n live pods, all Ready, and its status
// says so.
func waitRCReady(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, n int) {
	t.Helper()
	poll(t, fmt.Sprintf("RC %s at %d ready pods", name, n), 120*time.Second, func() error {
		pods := rcPods(ctx, t, cs, ns)
		if len(pods) != n {
			return fmt.Errorf("%d pods", len(pods))
		}
		for _, p := range pods {
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
			}
			if !ready {
				return fmt.Errorf("pod %s not ready (%s)", p.Name, p.Status.Phase)
			}
		}
		rc, err := cs.CoreV1().ReplicationControllers(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if int(rc.Status.Replicas) != n || int(rc.Status.ReadyReplicas) != n || rc.Status.ObservedGeneration != rc.Generation {
			return fmt.Errorf("status %+v (generation %d)", rc.Status, rc.Generation)
		}
		return nil
	})
}
