package webhook

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/admissionapi"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/test/webhookserver"
)

type allowAll struct{}

func (allowAll) Authorize(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
	return authorizer.DecisionAllow, "", nil
}

var cmGVR = corev1.SchemeGroupVersion.WithResource("configmaps")

func testRegistry() *generic.Registry {
	reg := generic.NewRegistry()
	reg.Add(&generic.Resource{GVR: cmGVR, Kind: "ConfigMap", Namespaced: true, Singular: "configmap",
		New: func() runtime.Object { return &corev1.ConfigMap{} }}, nil)
	for _, v := range []string{"v1", "v2"} {
		reg.Add(&generic.Resource{GVR: schema.GroupVersionResource{Group: "example.com", Version: v, Resource: "widgets"}, Kind: "Widget",
			Namespaced: true, Singular: "widget", HasStatus: true, New: func() runtime.Object { return &unstructured.Unstructured{} }}, nil)
	}
	return reg
}

// startPlugins runs the plugins over a fake API holding objs, with the
// test webhook on a TLS server; it returns the plugins and the webhook's
// CA bundle and URL.
func startPlugins(t testing.TB, objs func(url string, ca []byte) []runtime.Object) (*Plugins, *webhookserver.Server) {
	t.Helper()
	hook := webhookserver.New("unit")
	srv := httptest.NewTLSServer(hook)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	all := []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns1", Labels: map[string]string{"hooks": "on"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}}}
	// The API server defaults what it stores; the fake does not.
	for _, o := range objs(srv.URL, ca) {
		switch o := o.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			admissionapi.DefaultMutatingConfiguration(o)
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			admissionapi.DefaultValidatingConfiguration(o)
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			admissionapi.DefaultPolicy(o)
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			admissionapi.DefaultBinding(o)
		}
		all = append(all, o)
	}
	cs := fake.NewSimpleClientset(all...)
	factory := informers.NewSharedInformerFactory(cs, 0)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p, err := New(Config{Registry: testRegistry(), Client: cs, Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()),
		Informers: factory, Authorizer: allowAll{}, Stop: ctx.Done()})
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return p, hook
}

func hookConfig(url string, ca []byte, path string) (admissionregistrationv1.WebhookClientConfig, []admissionregistrationv1.RuleWithOperations, *admissionregistrationv1.SideEffectClass) {
	u := url + path
	none := admissionregistrationv1.SideEffectClassNone
	return admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: ca},
		[]admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{"", "example.com"}, APIVersions: []string{"v1"}, Resources: []string{"configmaps", "widgets", "widgets/status"}}}},
		&none
}

func configMapWrite(op admission.Operation) *admission.Attributes {
	return &admission.Attributes{Operation: op, Resource: cmGVR, Kind: corev1.SchemeGroupVersion.WithKind("ConfigMap"),
		Namespace: "ns1", Name: "c", Object: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns1"}},
		User: admission.User{Name: "alice"}, HasUser: true}
}

func TestMutatingWebhookPatchesTheObjectAndWarns(t *testing.T) {
	p, hook := startPlugins(t, func(url string, ca []byte) []runtime.Object {
		cc, rules, se := hookConfig(url, ca, "/mutate")
		return []runtime.Object{&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "m"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "m.example.com", ClientConfig: cc, Rules: rules, SideEffects: se,
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"hooks": "on"}},
				AdmissionReviewVersions: []string{"v1"}}}}}
	})
	var mu sync.Mutex
	var warnings []string
	ctx := admission.WithWarnings(context.Background(), func(s string) { mu.Lock(); warnings = append(warnings, s); mu.Unlock() })
	a := configMapWrite(admission.Create)
	if err := (admission.Chain{p.Mutating}).Admit(ctx, a); err != nil {
		t.Fatal(err)
	}
	cm := a.Object.(*corev1.ConfigMap)
	if cm.Labels[webhookserver.MutatedLabel] != "unit" || !a.Changed {
		t.Fatalf("labels after the webhook: %v (changed %v)", cm.Labels, a.Changed)
	}
	if len(warnings) != 1 || warnings[0] != "mutated by unit" {
		t.Fatalf("warnings: %q", warnings)
	}
	if r := hook.Requests(); len(r) != 1 || r[0].Operation != "CREATE" || r[0].Resource != "configmaps" {
		t.Fatalf("webhook requests: %+v", r)
	}

	// Another namespace is not selected.
	b := configMapWrite(admission.Create)
	b.Namespace = "elsewhere"
	if err := (admission.Chain{p.Mutating}).Admit(ctx, b); err != nil {
		t.Fatal(err)
	}
	if len(b.Object.(*corev1.ConfigMap).Labels) != 0 {
		t.Fatal("namespaceSelector ignored")
	}
}

func TestMutatingWebhookOnCustomObjectAndEquivalentVersion(t *testing.T) {
	p, hook := startPlugins(t, func(url string, ca []byte) []runtime.Object {
		cc, rules, se := hookConfig(url, ca, "/mutate")
		return []runtime.Object{&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "m"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "m.example.com", ClientConfig: cc, Rules: rules, SideEffects: se,
				AdmissionReviewVersions: []string{"v1"}}}}}
	})
	// The write is of v2, the rule names v1 only: matchPolicy Equivalent
	// (the default) sends it converted to v1 and puts the result back.
	gvr := schema.GroupVersionResource{Group: "example.com", Version: "v2", Resource: "widgets"}
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion("example.com/v2")
	obj.SetKind("Widget")
	obj.SetName("w")
	obj.SetNamespace("ns1")
	a := &admission.Attributes{Operation: admission.Create, Resource: gvr, Kind: gvr.GroupVersion().WithKind("Widget"),
		Namespace: "ns1", Name: "w", Object: obj}
	if err := (admission.Chain{p.Mutating}).Admit(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if obj.GetLabels()[webhookserver.MutatedLabel] != "unit" || obj.GetAPIVersion() != "example.com/v2" {
		t.Fatalf("after the webhook: %v", obj.Object)
	}
	if r := hook.Requests(); len(r) != 1 || r[0].Resource != "widgets" {
		t.Fatalf("requests: %+v", r)
	}
}

func TestValidatingWebhookDeniesAndFailurePolicy(t *testing.T) {
	ignore := admissionregistrationv1.Ignore
	timeout := int32(1)
	p, _ := startPlugins(t, func(url string, ca []byte) []runtime.Object {
		cc, rules, se := hookConfig(url, ca, "/deny")
		gone, _, _ := hookConfig("https://127.0.0.1:1", ca, "/deny")
		slow, _, _ := hookConfig(url, ca, "/slow/5")
		sel := func(v string) *metav1.LabelSelector {
			return &metav1.LabelSelector{MatchLabels: map[string]string{"case": v}}
		}
		return []runtime.Object{&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "v"},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{
				{Name: "deny.example.com", ClientConfig: cc, Rules: rules, SideEffects: se, ObjectSelector: sel("deny"), AdmissionReviewVersions: []string{"v1"}},
				{Name: "gone-fail.example.com", ClientConfig: gone, Rules: rules, SideEffects: se, ObjectSelector: sel("fail"), AdmissionReviewVersions: []string{"v1"}},
				{Name: "gone-ignore.example.com", ClientConfig: gone, Rules: rules, SideEffects: se, ObjectSelector: sel("ignore"), FailurePolicy: &ignore, AdmissionReviewVersions: []string{"v1"}},
				{Name: "slow.example.com", ClientConfig: slow, Rules: rules, SideEffects: se, ObjectSelector: sel("slow"), TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}},
			}}}
	})
	write := func(c string) error {
		a := configMapWrite(admission.Create)
		a.Object.(*corev1.ConfigMap).Labels = map[string]string{"case": c}
		return (admission.Chain{p.ValidatingWebhook}).Validate(context.Background(), a)
	}
	err := write("deny")
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `admission webhook "deny.example.com" denied the request: denied by unit: ConfigMap c`) {
		t.Fatalf("deny: %v", err)
	}
	if err := write("fail"); err == nil || !strings.Contains(err.Error(), `failed calling webhook "gone-fail.example.com"`) {
		t.Fatalf("unreachable, failurePolicy Fail: %v", err)
	}
	if err := write("ignore"); err != nil {
		t.Fatalf("unreachable, failurePolicy Ignore: %v", err)
	}
	start := time.Now()
	if err := write("slow"); err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("slow webhook with a 1 s timeout: %v after %v", err, time.Since(start))
	}
	if err := write("none"); err != nil {
		t.Fatalf("unselected: %v", err)
	}
}

func TestValidatingAdmissionPolicyDenies(t *testing.T) {
	fail := admissionregistrationv1.Fail
	p, _ := startPlugins(t, func(string, []byte) []runtime.Object {
		return []runtime.Object{
			&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "pol"},
				Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{FailurePolicy: &fail,
					MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
						RuleWithOperations: admissionregistrationv1.RuleWithOperations{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
							Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}}}},
					Validations: []admissionregistrationv1.Validation{{Expression: "has(object.data) && 'ok' in object.data", Message: "needs ok"}}}},
			&admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "bind"},
				Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: "pol",
					ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}}},
		}
	})
	a := configMapWrite(admission.Create)
	var err error
	// The policy source compiles what its informers deliver in the background.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = (admission.Chain{p.Policy}).Validate(context.Background(), a); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy 'pol' with binding 'bind' denied request: needs ok") {
		t.Fatalf("policy: %v", err)
	}
	if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) {
		t.Fatalf("policy refusal is not an API status: %T %v", err, err)
	}
	b := configMapWrite(admission.Create)
	b.Object.(*corev1.ConfigMap).Data = map[string]string{"ok": "1"}
	if err := (admission.Chain{p.Policy}).Validate(context.Background(), b); err != nil {
		t.Fatalf("allowed object: %v", err)
	}
}

func TestConvertorCopies(t *testing.T) {
	c := convertor{scheme}
	in := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Data: map[string]string{"k": "v"}}
	out := &corev1.ConfigMap{}
	if err := c.Convert(in, out, nil); err != nil || out.Name != "a" || out.Data["k"] != "v" {
		t.Fatalf("typed copy: %v %+v", err, out)
	}
	in.Data["k"] = "changed"
	if out.Data["k"] != "v" {
		t.Fatal("typed copy shares its maps")
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Widget", "spec": map[string]any{"a": int64(1)}}}
	uo := &unstructured.Unstructured{}
	uo.SetAPIVersion("example.com/v2")
	uo.SetKind("Widget")
	if err := c.Convert(u, uo, nil); err != nil || uo.GetAPIVersion() != "example.com/v2" || uo.Object["spec"].(map[string]any)["a"] != int64(1) {
		t.Fatalf("unstructured copy: %v %v", err, uo.Object)
	}
}

func TestResourceMapperFollowsTheRegistry(t *testing.T) {
	reg := testRegistry()
	m := newResourceMapper(reg)
	v1 := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	if got := m.EquivalentResourcesFor(v1, ""); len(got) != 2 {
		t.Fatalf("equivalents of %v: %v", v1, got)
	}
	if k := m.KindFor(v1, "status"); k.Kind != "Widget" {
		t.Fatalf("kind of widgets/status: %v", k)
	}
	v3 := v1
	v3.Version = "v3"
	reg.Add(&generic.Resource{GVR: v3, Kind: "Widget", Namespaced: true, Singular: "widget"}, nil)
	if got := m.EquivalentResourcesFor(v1, ""); len(got) != 3 {
		t.Fatalf("after a version came: %v", got)
	}
	if _, err := (restMapper{m}).RESTMapping(schema.GroupKind{Group: "example.com", Kind: "Widget"}, "v3"); err != nil {
		t.Fatalf("REST mapping: %v", err)
	}
}

func TestOptionsAndTyped(t *testing.T) {
	a := configMapWrite(admission.Update)
	a.DryRun = true
	o, ok := options(a).(*metav1.UpdateOptions)
	if !ok || len(o.DryRun) != 1 || o.Kind != "UpdateOptions" || o.APIVersion != "meta.k8s.io/v1" {
		t.Fatalf("options: %#v", options(a))
	}
	old := &corev1.ConfigMap{}
	got, _ := typed(old, corev1.SchemeGroupVersion.WithKind("ConfigMap"), true)
	if got == old || old.Kind != "" || got.GetObjectKind().GroupVersionKind().Kind != "ConfigMap" {
		t.Fatal("a shared object was typed in place")
	}
}

func TestEndpointResolverPicksAReadyEndpoint(t *testing.T) {
	ready, notReady := true, false
	port, name := int32(8443), "https"
	cs := fake.NewSimpleClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "hook", Namespace: "ns1"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: name, Port: 443}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "hook-1", Namespace: "ns1", Labels: map[string]string{discoveryv1.LabelServiceName: "hook"}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"198.51.100.7"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
				{Addresses: []string{"198.51.100.8"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			}},
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &endpointResolver{factory: informers.NewSharedInformerFactory(cs, 0), stop: ctx.Done()}
	for i := 0; i < 5; i++ {
		u, err := r.ResolveEndpoint("ns1", "hook", 443)
		if err != nil || u.String() != "https://198.51.100.8:8443" {
			t.Fatalf("resolved %v, %v", u, err)
		}
	}
	if _, err := r.ResolveEndpoint("ns1", "hook", 80); err == nil {
		t.Fatal("a port the Service does not have resolved")
	}
}

// BenchmarkNoConfigurations is the cost the plugins add to every write
// while nothing is configured.
func BenchmarkNoConfigurations(b *testing.B) {
	p, _ := startPlugins(b, func(string, []byte) []runtime.Object { return nil })
	chain := admission.Chain(p.Chain())
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a := configMapWrite(admission.Create)
		if err := chain.Admit(ctx, a); err != nil {
			b.Fatal(err)
		}
		if err := chain.Validate(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOneMutatingWebhook is a write through one mutating webhook on
// a local TLS server (AdmissionReview, JSONPatch, conversion back).
func BenchmarkOneMutatingWebhook(b *testing.B) {
	p, _ := startPlugins(b, func(url string, ca []byte) []runtime.Object {
		cc, rules, se := hookConfig(url, ca, "/mutate")
		return []runtime.Object{&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "m"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "m.example.com", ClientConfig: cc, Rules: rules, SideEffects: se,
				AdmissionReviewVersions: []string{"v1"}}}}}
	})
	chain := admission.Chain(p.Chain())
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a := configMapWrite(admission.Create)
		if err := chain.Admit(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReinvocationIfNeeded: a webhook with reinvocationPolicy IfNeeded is
// called again when a later webhook changed the object; one with Never is
// not.
func TestReinvocationIfNeeded(t *testing.T) {
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	p, hook := startPlugins(t, func(url string, ca []byte) []runtime.Object {
		a, rules, se := hookConfig(url, ca, "/label/a")
		b, _, _ := hookConfig(url, ca, "/label/b")
		return []runtime.Object{&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "m"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{
				{Name: "a.example.com", ClientConfig: a, Rules: rules, SideEffects: se, ReinvocationPolicy: &ifNeeded, AdmissionReviewVersions: []string{"v1"}},
				{Name: "b.example.com", ClientConfig: b, Rules: rules, SideEffects: se, AdmissionReviewVersions: []string{"v1"}},
			}}}
	})
	a := configMapWrite(admission.Create)
	if err := (admission.Chain{p.Mutating}).Admit(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if l := a.Object.(*corev1.ConfigMap).Labels; l["webhook.petrel.io/a"] != "unit" || l["webhook.petrel.io/b"] != "unit" {
		t.Fatalf("labels: %v", l)
	}
	calls := map[string]int{}
	for _, r := range hook.Requests() {
		calls[r.Path]++
	}
	if calls["/label/a"] != 2 || calls["/label/b"] != 1 || !a.Reinvoking {
		t.Fatalf("calls %v (reinvoked %v)", calls, a.Reinvoking)
	}
}
