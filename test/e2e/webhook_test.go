package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/images"
	"github.com/petrel-project/petrel/test/webhookserver"
)

// webhookPKI is a CA and a serving pair for the test's webhooks: the pod's
// (reached as webhook.<ns>.svc, the name the API server checks for a
// Service reference) and the host's (127.0.0.1).
type webhookPKI struct {
	caPEM, certPEM, keyPEM []byte
}

func newWebhookPKI(t *testing.T, dnsNames ...string) webhookPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "webhook-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "webhook"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), DNSNames: dnsNames,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return webhookPKI{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
}

// TestAdmissionWebhooks runs real webhooks against a real cluster: one in
// a pod on the node behind a Service (clientConfig.service), one on the
// host by URL, both speaking AdmissionReview v1 (test/webhookserver); and a
// ValidatingAdmissionPolicy with its binding. Each case scopes its
// configuration by an object label, so the cluster is shared.
func TestAdmissionWebhooks(t *testing.T) {
	u := startPodCluster(t)
	s := u.Server
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const ns = "wh"
	pki := newWebhookPKI(t, "webhook."+ns+".svc", "webhook."+ns+".svc.cluster.local")
	caBundle := base64.StdEncoding.EncodeToString(pki.caPEM)

	// The host's webhook, by URL.
	host := webhookserver.New("host")
	pair, err := tls.X509KeyPair(pki.certPEM, pki.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(host)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	hostURL := hs.URL
	// A port nothing listens on: the unreachable webhook.
	closed := httptest.NewServer(http.NotFoundHandler())
	unreachable := "https://" + closed.Listener.Addr().String() + "/allow"
	closed.Close()

	// The pod's webhook, behind a Service.
	kubectl(t, s, "", "create", "namespace", ns)
	kubectl(t, s, "", "label", "namespace", ns, "webhooks=on")
	kubectl(t, s, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: webhook, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: webhook}}
  template:
    metadata: {labels: {app: webhook}}
    spec:
      containers:
      - name: webhook
        image: %[2]s
        env:
        - {name: WEBHOOK_TLS_CERT, value: %[3]q}
        - {name: WEBHOOK_TLS_KEY, value: %[4]q}
        readinessProbe:
          tcpSocket: {port: 8443}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: webhook, namespace: %[1]s}
spec:
  selector: {app: webhook}
  ports: [{port: 443, targetPort: 8443}]
`, ns, images.TestServer, pki.certPEM, pki.keyPEM), "apply", "-f", "-")
	poll(t, "webhook pod ready", 90*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=webhook",
			"-o", "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}")
		if err != nil || strings.TrimSpace(out) == "" {
			return fmt.Errorf("no ready endpoint: %v %s", err, out)
		}
		return nil
	})
	podName := strings.TrimSpace(kubectl(t, s, "", "get", "pods", "-n", ns, "-l", "app=webhook", "-o", "jsonpath={.items[0].metadata.name}"))

	// webhookYAML is one webhook of a configuration, matched by the object
	// label sel=<value> on CREATE and UPDATE of what rules name.
	service := func(path string) string {
		return fmt.Sprintf("service: {namespace: %s, name: webhook, path: %s}\n    caBundle: %s", ns, path, caBundle)
	}
	url := func(u string) string { return fmt.Sprintf("url: %s\n    caBundle: %s", u, caBundle) }
	webhookYAML := func(kind, name, client, sel, extra string, groups, resources string) string {
		return fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: %s
metadata: {name: %s}
webhooks:
- name: %s.webhooks.petrel.io
  clientConfig:
    %s
  rules:
  - {operations: [CREATE, UPDATE], apiGroups: [%s], apiVersions: ["*"], resources: [%s]}
  namespaceSelector: {matchLabels: {webhooks: "on"}}
  objectSelector: {matchLabels: {sel: %s}}
  admissionReviewVersions: [v1]
%s`, kind, name, name, client, groups, resources, sel, extra)
	}
	apply := func(yaml string) { kubectl(t, s, yaml, "apply", "-f", "-") }
	// create makes a ConfigMap labelled sel=<sel> and returns kubectl's
	// output (warnings included) and error.
	create := func(name, sel string, args ...string) (string, error) {
		return s.Kubectl(ctx, fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: %s, namespace: %s, labels: {sel: %s}}
data: {k: v}
`, name, ns, sel), append([]string{"create", "-f", "-"}, args...)...)
	}

	t.Run("MutatingByService", func(t *testing.T) {
		start := time.Now()
		apply(webhookYAML("MutatingWebhookConfiguration", "mutate-svc", service("/mutate"), "mutate", "  sideEffects: None", `""`, "configmaps"))
		// Configuration changes take effect as the informers see them.
		var out string
		poll(t, "mutating webhook in effect", 10*time.Second, func() error {
			name := fmt.Sprintf("m%d", time.Now().UnixNano())
			out, err = create(name, "mutate")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			label, err := s.Kubectl(ctx, "", "get", "configmap", "-n", ns, name, "-o", "jsonpath={.metadata.labels.webhook\\.petrel\\.io/mutated}")
			if err != nil || label != podName {
				return fmt.Errorf("label %q (want %q), %v", label, podName, err)
			}
			return nil
		})
		t.Logf("mutating webhook in effect %v after its configuration", time.Since(start))
		mustContain(t, out, "Warning: mutated by "+podName)
	})

	t.Run("DenyByURL", func(t *testing.T) {
		apply(webhookYAML("ValidatingWebhookConfiguration", "deny-url", url(hostURL+"/deny"), "deny", "  sideEffects: None", `""`, "configmaps"))
		poll(t, "denying webhook in effect", 10*time.Second, func() error {
			out, err := create("d1", "deny")
			if err == nil {
				_, _ = s.Kubectl(ctx, "", "delete", "configmap", "-n", ns, "d1")
				return fmt.Errorf("created")
			}
			if !strings.Contains(out, `admission webhook "deny-url.webhooks.petrel.io" denied the request: denied by host: ConfigMap d1`) {
				return fmt.Errorf("refusal: %s", out)
			}
			return nil
		})
		// Other objects pass (objectSelector).
		if out, err := create("d2", "other"); err != nil {
			t.Fatalf("unselected object refused: %v\n%s", err, out)
		}
	})

	t.Run("DryRunWithSideEffects", func(t *testing.T) {
		// A dry run reaches a webhook without side effects (dryRun true in
		// its review) and is refused as a real write would be.
		before := len(host.Requests())
		out, err := create("d3", "deny", "--dry-run=server")
		if err == nil || !strings.Contains(out, "denied by host") {
			t.Fatalf("dry run: %v\n%s", err, out)
		}
		reqs := host.Requests()[before:]
		if len(reqs) == 0 || !reqs[len(reqs)-1].DryRun {
			t.Fatalf("webhook requests on dry run: %+v", reqs)
		}
	})

	t.Run("FailurePolicy", func(t *testing.T) {
		apply(webhookYAML("ValidatingWebhookConfiguration", "unreachable-fail", url(unreachable), "fail", "  sideEffects: None\n  failurePolicy: Fail", `""`, "configmaps"))
		apply(webhookYAML("ValidatingWebhookConfiguration", "unreachable-ignore", url(unreachable), "ignore", "  sideEffects: None\n  failurePolicy: Ignore", `""`, "configmaps"))
		poll(t, "failurePolicy Fail", 10*time.Second, func() error {
			out, err := create("f1", "fail")
			if err == nil {
				_, _ = s.Kubectl(ctx, "", "delete", "configmap", "-n", ns, "f1")
				return fmt.Errorf("created")
			}
			if !strings.Contains(out, `failed calling webhook "unreachable-fail.webhooks.petrel.io"`) {
				return fmt.Errorf("refusal: %s", out)
			}
			return nil
		})
		if out, err := create("i1", "ignore"); err != nil {
			t.Fatalf("failurePolicy Ignore refused: %v\n%s", err, out)
		}
	})

	t.Run("Timeout", func(t *testing.T) {
		apply(webhookYAML("ValidatingWebhookConfiguration", "slow", url(hostURL+"/slow/10"), "slow", "  sideEffects: None\n  timeoutSeconds: 1", `""`, "configmaps"))
		poll(t, "timeout honoured", 10*time.Second, func() error {
			start := time.Now()
			out, err := create("s1", "slow")
			took := time.Since(start)
			if err == nil {
				_, _ = s.Kubectl(ctx, "", "delete", "configmap", "-n", ns, "s1")
				return fmt.Errorf("created")
			}
			if !strings.Contains(out, `failed calling webhook "slow.webhooks.petrel.io"`) {
				return fmt.Errorf("refusal: %s", out)
			}
			if took > 5*time.Second {
				t.Fatalf("refused after %v, the webhook's timeout is 1 s", took)
			}
			t.Logf("refused after %v (timeoutSeconds 1)", took)
			return nil
		})
	})

	t.Run("CustomResourceAndStatus", func(t *testing.T) {
		kubectl(t, s, `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gizmos.webhooks.example.com}
spec:
  group: webhooks.example.com
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
`, "apply", "-f", "-")
		kubectl(t, s, "", "wait", "--for=condition=Established", "--timeout=20s", "crd/gizmos.webhooks.example.com")
		apply(webhookYAML("MutatingWebhookConfiguration", "mutate-gizmos", url(hostURL+"/mutate"), "gizmo", "  sideEffects: None", "webhooks.example.com", "gizmos"))
		apply(webhookYAML("ValidatingWebhookConfiguration", "deny-gizmo-status", url(hostURL+"/deny"), "gizmo", "  sideEffects: None", "webhooks.example.com", "gizmos/status"))
		poll(t, "webhook on a custom resource", 10*time.Second, func() error {
			name := fmt.Sprintf("g%d", time.Now().UnixNano())
			out, err := s.Kubectl(ctx, fmt.Sprintf(`apiVersion: webhooks.example.com/v1
kind: Gizmo
metadata: {name: %s, namespace: %s, labels: {sel: gizmo}}
spec: {size: 1}
`, name, ns), "create", "-f", "-")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			label, _ := s.Kubectl(ctx, "", "get", "gizmo", "-n", ns, name, "-o", "jsonpath={.metadata.labels.webhook\\.petrel\\.io/mutated}")
			if label != "host" {
				return fmt.Errorf("label %q", label)
			}
			// The status subresource goes to the webhook that names it; the
			// main resource's update does not.
			out, err = s.Kubectl(ctx, "", "patch", "gizmo", "-n", ns, name, "--subresource=status", "--type=merge", "-p", `{"status":{"ok":true}}`)
			if err == nil || !strings.Contains(out, "denied by host: Gizmo "+name) {
				return fmt.Errorf("status patch: %v %s", err, out)
			}
			if out, err := s.Kubectl(ctx, "", "patch", "gizmo", "-n", ns, name, "--type=merge", "-p", `{"spec":{"size":2}}`); err != nil {
				t.Fatalf("spec patch refused: %v\n%s", err, out)
			}
			return nil
		})
		var statusCalls int
		for _, r := range host.Requests() {
			if r.Resource == "gizmos" && r.SubResource == "status" && r.Operation == "UPDATE" {
				statusCalls++
			}
		}
		if statusCalls == 0 {
			t.Fatalf("no gizmos/status review reached the webhook: %+v", host.Requests())
		}
	})

	t.Run("Scale", func(t *testing.T) {
		// deployments/scale reaches webhooks as Kubernetes sends it: an
		// UPDATE of the Scale; the Deployment's own rule does not see it.
		apply(fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: deny-scale}
webhooks:
- name: deny-scale.webhooks.petrel.io
  clientConfig:
    %s
  rules:
  - {operations: [UPDATE], apiGroups: [apps], apiVersions: [v1], resources: [deployments/scale]}
  namespaceSelector: {matchLabels: {webhooks: "on"}}
  sideEffects: None
  admissionReviewVersions: [v1]
`, url(hostURL+"/deny")))
		poll(t, "scale webhook in effect", 10*time.Second, func() error {
			out, err := s.Kubectl(ctx, "", "scale", "deployment", "-n", ns, "webhook", "--replicas=2")
			if err == nil || !strings.Contains(out, "denied by host: Scale webhook") {
				return fmt.Errorf("scale: %v %s", err, out)
			}
			return nil
		})
		kubectl(t, s, "", "delete", "validatingwebhookconfiguration", "deny-scale")
	})

	t.Run("PodBindingAndEviction", func(t *testing.T) {
		// pods/binding and pods/eviction reach webhooks as Kubernetes sends
		// them: a CREATE of the subresource with a Binding or an Eviction.
		apply(fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: pod-subresources}
webhooks:
- name: allow-binding.webhooks.petrel.io
  clientConfig:
    %s
  rules:
  - {operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods/binding]}
  namespaceSelector: {matchLabels: {webhooks: "on"}}
  sideEffects: None
  admissionReviewVersions: [v1]
- name: deny-eviction.webhooks.petrel.io
  clientConfig:
    %s
  rules:
  - {operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods/eviction]}
  namespaceSelector: {matchLabels: {webhooks: "on"}}
  sideEffects: None
  admissionReviewVersions: [v1]
`, url(hostURL+"/allow"), url(hostURL+"/deny")))
		poll(t, "eviction webhook in effect", 10*time.Second, func() error {
			err := cs.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns}})
			if err == nil || !strings.Contains(err.Error(), "denied by host: Eviction "+podName) {
				return fmt.Errorf("eviction: %v", err)
			}
			return nil
		})
		kubectl(t, s, "", "run", "-n", ns, "bound", "--image="+images.TestServer, "--restart=Never")
		poll(t, "binding reviewed", 20*time.Second, func() error {
			for _, r := range host.Requests() {
				if r.Resource == "pods" && r.SubResource == "binding" && r.Operation == "CREATE" && r.Name == "bound" {
					return nil
				}
			}
			return fmt.Errorf("no pods/binding review for pod bound")
		})
		kubectl(t, s, "", "delete", "validatingwebhookconfiguration", "pod-subresources")
	})

	t.Run("ConnectExec", func(t *testing.T) {
		// exec reaches webhooks as a CONNECT of pods/exec with the
		// PodExecOptions, and a denial reaches kubectl.
		apply(fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: deny-exec}
webhooks:
- name: deny-exec.webhooks.petrel.io
  clientConfig:
    %s
  rules:
  - {operations: [CONNECT], apiGroups: [""], apiVersions: [v1], resources: [pods/exec]}
  namespaceSelector: {matchLabels: {webhooks: "on"}}
  sideEffects: None
  admissionReviewVersions: [v1]
`, url(hostURL+"/deny")))
		poll(t, "exec webhook in effect", 10*time.Second, func() error {
			out, err := s.Kubectl(ctx, "", "exec", "-n", ns, podName, "--", "true")
			if err == nil || !strings.Contains(out, "denied by host: PodExecOptions "+podName) {
				return fmt.Errorf("exec: %v %s", err, out)
			}
			return nil
		})
		kubectl(t, s, "", "delete", "validatingwebhookconfiguration", "deny-exec")
	})

	t.Run("ValidatingAdmissionPolicy", func(t *testing.T) {
		apply(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: small-configmaps}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}
  validations:
  - expression: "!has(object.data) || !('forbidden' in object.data)"
    message: "the key forbidden is forbidden"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: small-configmaps-here}
spec:
  policyName: small-configmaps
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {matchLabels: {webhooks: "on"}}
`)
		poll(t, "policy in effect", 10*time.Second, func() error {
			out, err := s.Kubectl(ctx, "", "create", "configmap", "-n", ns, "p1", "--from-literal=forbidden=1")
			if err == nil {
				_, _ = s.Kubectl(ctx, "", "delete", "configmap", "-n", ns, "p1")
				return fmt.Errorf("created")
			}
			if !strings.Contains(out, "ValidatingAdmissionPolicy 'small-configmaps' with binding 'small-configmaps-here' denied request") ||
				!strings.Contains(out, "the key forbidden is forbidden") {
				return fmt.Errorf("refusal: %s", out)
			}
			return nil
		})
		kubectl(t, s, "", "create", "configmap", "-n", ns, "p2", "--from-literal=allowed=1")
		// The status controller type-checks policies against the matched
		// kinds' schemas: a ConfigMap has no spec.
		apply(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: mistyped}
spec:
  matchConstraints:
    resourceRules:
    - {operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}
  validations:
  - expression: "object.spec.replicas > 1"
`)
		poll(t, "type checking", 20*time.Second, func() error {
			out, err := s.Kubectl(ctx, "", "get", "validatingadmissionpolicy", "mistyped", "-o",
				"jsonpath={.status.observedGeneration} {.status.typeChecking.expressionWarnings[0].fieldRef}: {.status.typeChecking.expressionWarnings[0].warning}")
			if err != nil || !strings.HasPrefix(out, "1 spec.validations[0].expression: ") || !strings.Contains(out, "spec") {
				return fmt.Errorf("status %q, %v", out, err)
			}
			t.Logf("type checking: %s", out)
			return nil
		})
		// Outside the bound namespaces the policy does not apply.
		kubectl(t, s, "", "create", "configmap", "-n", "default", "p3", "--from-literal=forbidden=1")
	})

	t.Run("CRDWebhookConversion", func(t *testing.T) {
		// Two versions whose field names differ: the host's webhook
		// converts (v1 spec.color, v2 spec.colour); objects are stored as v1.
		kubectl(t, s, fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: thingies.webhooks.example.com}
spec:
  group: webhooks.example.com
  scope: Namespaced
  names: {plural: thingies, singular: thingy, kind: Thingy}
  conversion:
    strategy: Webhook
    webhook:
      conversionReviewVersions: [v1]
      clientConfig:
        url: %s/convert
        caBundle: %s
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {color: {type: string}}}
  - name: v2
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {colour: {type: string}}}
`, hostURL, caBundle), "apply", "-f", "-")
		kubectl(t, s, "", "wait", "--for=condition=Established", "--timeout=20s", "crd/thingies.webhooks.example.com")
		poll(t, "v2 object created", 10*time.Second, func() error {
			out, err := s.Kubectl(ctx, fmt.Sprintf(`apiVersion: webhooks.example.com/v2
kind: Thingy
metadata: {name: t1, namespace: %s}
spec: {colour: red}
`, ns), "apply", "-f", "-")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		if out := kubectl(t, s, "", "get", "thingies.v1.webhooks.example.com", "-n", ns, "t1", "-o", "jsonpath={.apiVersion} {.spec.color}"); out != "webhooks.example.com/v1 red" {
			t.Fatalf("read as v1: %q", out)
		}
		if out := kubectl(t, s, "", "get", "thingies.v2.webhooks.example.com", "-n", ns, "t1", "-o", "jsonpath={.apiVersion} {.spec.colour}"); out != "webhooks.example.com/v2 red" {
			t.Fatalf("read as v2: %q", out)
		}
		var conversions int
		for _, r := range host.Requests() {
			if r.Operation == "CONVERT" {
				conversions++
			}
		}
		if conversions == 0 {
			t.Fatal("the conversion webhook was not called")
		}
	})

	t.Run("InvalidConfiguration", func(t *testing.T) {
		_, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "deny-url", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Kubectl(ctx, `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: bad}
webhooks:
- name: bad
  clientConfig: {url: "http://127.0.0.1/x"}
  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]
  sideEffects: Some
  timeoutSeconds: 31
  admissionReviewVersions: [v1]
`, "create", "-f", "-")
		if err == nil {
			t.Fatalf("invalid configuration accepted:\n%s", out)
		}
		mustContain(t, out, "webhooks[0].name", "webhooks[0].clientConfig.url", "webhooks[0].sideEffects", "webhooks[0].timeoutSeconds")
	})
}
