package admissionapi

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func fields(errs field.ErrorList) string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field+": "+e.Type.String())
	}
	return strings.Join(out, "\n")
}

func validWebhook() admissionregistrationv1.ValidatingWebhook {
	u := "https://hook.example.com/v"
	none := admissionregistrationv1.SideEffectClassNone
	return admissionregistrationv1.ValidatingWebhook{Name: "v.hook.example.com", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &u},
		Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods", "pods/status"}}}},
		SideEffects: &none, AdmissionReviewVersions: []string{"v1"}}
}

func TestValidateWebhookConfiguration(t *testing.T) {
	ok := &admissionregistrationv1.ValidatingWebhookConfiguration{Webhooks: []admissionregistrationv1.ValidatingWebhook{validWebhook()}}
	DefaultValidatingConfiguration(ok)
	if errs := ValidateValidatingConfiguration(ok); len(errs) != 0 {
		t.Fatalf("valid configuration refused:\n%s", fields(errs))
	}
	if h := ok.Webhooks[0]; *h.FailurePolicy != admissionregistrationv1.Fail || *h.MatchPolicy != admissionregistrationv1.Equivalent ||
		*h.TimeoutSeconds != 10 || h.NamespaceSelector == nil || *h.Rules[0].Scope != admissionregistrationv1.AllScopes {
		t.Fatalf("defaults: %+v", h)
	}

	for name, tc := range map[string]struct {
		change func(h *admissionregistrationv1.ValidatingWebhook)
		want   string
	}{
		"short name": {func(h *admissionregistrationv1.ValidatingWebhook) { h.Name = "hook" }, "webhooks[0].name: Invalid value"},
		"http url": {func(h *admissionregistrationv1.ValidatingWebhook) {
			u := "http://x.example.com/"
			h.ClientConfig.URL = &u
		}, "webhooks[0].clientConfig.url: Invalid value"},
		"url with query": {func(h *admissionregistrationv1.ValidatingWebhook) {
			u := "https://x.example.com/?a=b"
			h.ClientConfig.URL = &u
		}, "webhooks[0].clientConfig.url: Invalid value"},
		"url and service": {func(h *admissionregistrationv1.ValidatingWebhook) {
			h.ClientConfig.Service = &admissionregistrationv1.ServiceReference{Name: "s", Namespace: "n"}
		}, "webhooks[0].clientConfig: Required value"},
		"service path": {func(h *admissionregistrationv1.ValidatingWebhook) {
			p := "x"
			h.ClientConfig = admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "s", Namespace: "n", Path: &p}}
		}, "webhooks[0].clientConfig.service.path: Invalid value"},
		"side effects": {func(h *admissionregistrationv1.ValidatingWebhook) {
			se := admissionregistrationv1.SideEffectClassSome
			h.SideEffects = &se
		}, "webhooks[0].sideEffects: Unsupported value"},
		"no side effects": {func(h *admissionregistrationv1.ValidatingWebhook) { h.SideEffects = nil }, "webhooks[0].sideEffects: Required value"},
		"timeout":         {func(h *admissionregistrationv1.ValidatingWebhook) { s := int32(31); h.TimeoutSeconds = &s }, "webhooks[0].timeoutSeconds: Invalid value"},
		"review version":  {func(h *admissionregistrationv1.ValidatingWebhook) { h.AdmissionReviewVersions = []string{"v2"} }, "webhooks[0].admissionReviewVersions: Invalid value"},
		"operation": {func(h *admissionregistrationv1.ValidatingWebhook) {
			h.Rules[0].Operations = []admissionregistrationv1.OperationType{"GET"}
		}, "webhooks[0].rules[0].operations[0]: Unsupported value"},
		"wildcard resources": {func(h *admissionregistrationv1.ValidatingWebhook) { h.Rules[0].Resources = []string{"*", "pods"} }, "webhooks[0].rules[0].resources: Invalid value"},
		"selector": {func(h *admissionregistrationv1.ValidatingWebhook) {
			h.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"a b": "c"}}
		}, "webhooks[0].objectSelector.matchLabels: Invalid value"},
		"match condition": {func(h *admissionregistrationv1.ValidatingWebhook) {
			h.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "c", Expression: "object.metadata.name =="}}
		}, "webhooks[0].matchConditions[0].expression: Invalid value"},
	} {
		t.Run(name, func(t *testing.T) {
			h := validWebhook()
			tc.change(&h)
			c := &admissionregistrationv1.ValidatingWebhookConfiguration{Webhooks: []admissionregistrationv1.ValidatingWebhook{h}}
			got := fields(ValidateValidatingConfiguration(c))
			if !strings.Contains(got, tc.want) {
				t.Fatalf("errors:\n%s\nwant %q", got, tc.want)
			}
		})
	}

	dup := &admissionregistrationv1.MutatingWebhookConfiguration{Webhooks: []admissionregistrationv1.MutatingWebhook{
		{Name: "m.hook.example.com", ClientConfig: validWebhook().ClientConfig, SideEffects: validWebhook().SideEffects, AdmissionReviewVersions: []string{"v1"}},
		{Name: "m.hook.example.com", ClientConfig: validWebhook().ClientConfig, SideEffects: validWebhook().SideEffects, AdmissionReviewVersions: []string{"v1"}},
	}}
	DefaultMutatingConfiguration(dup)
	if got := fields(ValidateMutatingConfiguration(dup)); got != "webhooks[1].name: Duplicate value" {
		t.Fatalf("duplicate names: %s", got)
	}
	if *dup.Webhooks[0].ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy {
		t.Fatal("reinvocationPolicy not defaulted")
	}
}

func TestValidatePolicyAndBinding(t *testing.T) {
	p := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}}}}}},
			Variables:   []admissionregistrationv1.Variable{{Name: "replicas", Expression: "object.spec.replicas"}},
			Validations: []admissionregistrationv1.Validation{{Expression: "variables.replicas <= 5", MessageExpression: "'too many: ' + string(variables.replicas)"}},
		}}
	DefaultPolicy(p)
	if errs := ValidatePolicy(p); len(errs) != 0 {
		t.Fatalf("valid policy refused:\n%s", fields(errs))
	}
	p.Spec.Validations = append(p.Spec.Validations, admissionregistrationv1.Validation{Expression: "object.spec.replicas +", Message: "a\nb"})
	p.Spec.MatchConstraints.ResourceRules = nil
	got := fields(ValidatePolicy(p))
	for _, want := range []string{"spec.validations[1].expression: Invalid value", "spec.validations[1].message: Invalid value", "spec.matchConstraints.resourceRules: Required value"} {
		if !strings.Contains(got, want) {
			t.Fatalf("errors:\n%s\nwant %q", got, want)
		}
	}
	if got := fields(ValidatePolicy(&admissionregistrationv1.ValidatingAdmissionPolicy{})); !strings.Contains(got, "spec.matchConstraints: Required value") || !strings.Contains(got, "spec.validations: Required value") {
		t.Fatalf("empty policy: %s", got)
	}

	b := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
		PolicyName: "p", ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}}}
	DefaultBinding(b)
	if errs := ValidateBinding(b); len(errs) != 0 {
		t.Fatalf("valid binding refused:\n%s", fields(errs))
	}
	b.Spec.ValidationActions = append(b.Spec.ValidationActions, admissionregistrationv1.Warn, "Shout")
	b.Spec.ParamRef = &admissionregistrationv1.ParamRef{}
	got = fields(ValidateBinding(b))
	for _, want := range []string{"spec.validationActions: Invalid value", "spec.validationActions[2]: Unsupported value", "spec.paramRef: Required value", "spec.paramRef.parameterNotFoundAction: Required value"} {
		if !strings.Contains(got, want) {
			t.Fatalf("errors:\n%s\nwant %q", got, want)
		}
	}
}
