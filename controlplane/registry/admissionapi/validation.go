package admissionapi

import (
	"fmt"
	"net/url"
	"strings"
	"sync"

	celgo "github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	admissioncel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

// maxMatchConditions is Kubernetes' bound on a webhook's or policy's
// matchConditions.
const maxMatchConditions = 64

// ValidateMutatingConfiguration checks a MutatingWebhookConfiguration.
func ValidateMutatingConfiguration(c *admissionregistrationv1.MutatingWebhookConfiguration) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range c.Webhooks {
		h := &c.Webhooks[i]
		p := field.NewPath("webhooks").Index(i)
		errs = append(errs, validateWebhook(p, names, h.Name, h.ClientConfig, h.Rules, h.FailurePolicy, h.MatchPolicy,
			h.NamespaceSelector, h.ObjectSelector, h.SideEffects, h.TimeoutSeconds, h.AdmissionReviewVersions, h.MatchConditions)...)
		if r := h.ReinvocationPolicy; r != nil && *r != admissionregistrationv1.NeverReinvocationPolicy && *r != admissionregistrationv1.IfNeededReinvocationPolicy {
			errs = append(errs, field.NotSupported(p.Child("reinvocationPolicy"), *r, []string{string(admissionregistrationv1.NeverReinvocationPolicy), string(admissionregistrationv1.IfNeededReinvocationPolicy)}))
		}
	}
	return errs
}

// ValidateValidatingConfiguration checks a ValidatingWebhookConfiguration.
func ValidateValidatingConfiguration(c *admissionregistrationv1.ValidatingWebhookConfiguration) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range c.Webhooks {
		h := &c.Webhooks[i]
		errs = append(errs, validateWebhook(field.NewPath("webhooks").Index(i), names, h.Name, h.ClientConfig, h.Rules, h.FailurePolicy, h.MatchPolicy,
			h.NamespaceSelector, h.ObjectSelector, h.SideEffects, h.TimeoutSeconds, h.AdmissionReviewVersions, h.MatchConditions)...)
	}
	return errs
}

func validateWebhook(p *field.Path, names sets.Set[string], name string, cc admissionregistrationv1.WebhookClientConfig,
	rules []admissionregistrationv1.RuleWithOperations, fp *admissionregistrationv1.FailurePolicyType, mp *admissionregistrationv1.MatchPolicyType,
	nsSel, objSel *metav1.LabelSelector, se *admissionregistrationv1.SideEffectClass, timeout *int32, versions []string,
	conditions []admissionregistrationv1.MatchCondition) field.ErrorList {
	var errs field.ErrorList
	np := p.Child("name")
	switch {
	case name == "":
		errs = append(errs, field.Required(np, ""))
	case names.Has(name):
		errs = append(errs, field.Duplicate(np, name))
	default:
		for _, msg := range utilvalidation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(np, name, msg))
		}
		if strings.Count(name, ".") < 2 {
			errs = append(errs, field.Invalid(np, name, "should be a domain with at least three segments separated by dots"))
		}
	}
	names.Insert(name)
	for j := range rules {
		errs = append(errs, validateRuleWithOperations(&rules[j], p.Child("rules").Index(j))...)
	}
	errs = append(errs, validateFailurePolicy(fp, p.Child("failurePolicy"))...)
	errs = append(errs, validateMatchPolicy(mp, p.Child("matchPolicy"))...)
	switch {
	case se == nil:
		errs = append(errs, field.Required(p.Child("sideEffects"), "must specify one of None, NoneOnDryRun"))
	case *se != admissionregistrationv1.SideEffectClassNone && *se != admissionregistrationv1.SideEffectClassNoneOnDryRun:
		errs = append(errs, field.NotSupported(p.Child("sideEffects"), *se, []string{string(admissionregistrationv1.SideEffectClassNone), string(admissionregistrationv1.SideEffectClassNoneOnDryRun)}))
	}
	if timeout != nil && (*timeout < 1 || *timeout > 30) {
		errs = append(errs, field.Invalid(p.Child("timeoutSeconds"), *timeout, "the timeout value must be between 1 and 30 seconds"))
	}
	errs = append(errs, validateReviewVersions(versions, p.Child("admissionReviewVersions"))...)
	errs = append(errs, validateClientConfig(cc, p.Child("clientConfig"))...)
	errs = append(errs, validateSelector(nsSel, p.Child("namespaceSelector"))...)
	errs = append(errs, validateSelector(objSel, p.Child("objectSelector"))...)
	errs = append(errs, validateMatchConditions(conditions, p.Child("matchConditions"), nil, admissioncel.OptionalVariableDeclarations{HasAuthorizer: true})...)
	return errs
}

func validateSelector(s *metav1.LabelSelector, p *field.Path) field.ErrorList {
	if s == nil {
		return nil
	}
	return metav1validation.ValidateLabelSelector(s, metav1validation.LabelSelectorValidationOptions{}, p)
}

func validateReviewVersions(versions []string, p *field.Path) field.ErrorList {
	if len(versions) == 0 {
		return field.ErrorList{field.Required(p, "must specify one of v1, v1beta1")}
	}
	var errs field.ErrorList
	seen := sets.New[string]()
	known := false
	for i, v := range versions {
		if seen.Has(v) {
			errs = append(errs, field.Duplicate(p.Index(i), v))
		}
		seen.Insert(v)
		for _, msg := range utilvalidation.IsDNS1035Label(v) {
			errs = append(errs, field.Invalid(p.Index(i), v, msg))
		}
		known = known || v == "v1" || v == "v1beta1"
	}
	if !known {
		errs = append(errs, field.Invalid(p, versions, "must include at least one of v1, v1beta1"))
	}
	return errs
}

func validateClientConfig(cc admissionregistrationv1.WebhookClientConfig, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case cc.URL != nil && cc.Service != nil:
		errs = append(errs, field.Required(p, "exactly one of url or service is required"))
	case cc.URL != nil:
		up := p.Child("url")
		u, err := url.Parse(*cc.URL)
		if err != nil {
			return append(errs, field.Invalid(up, *cc.URL, "must be a valid URL: "+err.Error()))
		}
		if u.Scheme != "https" {
			errs = append(errs, field.Invalid(up, u.Scheme, "'https' is the only allowed URL scheme"))
		}
		if u.Host == "" {
			errs = append(errs, field.Invalid(up, u.Host, "host must be specified"))
		}
		if u.User != nil {
			errs = append(errs, field.Invalid(up, u.User.String(), "user information is not permitted in the URL"))
		}
		if u.Fragment != "" || u.RawFragment != "" {
			errs = append(errs, field.Invalid(up, u.Fragment, "fragments are not permitted in the URL"))
		}
		if u.RawQuery != "" {
			errs = append(errs, field.Invalid(up, u.RawQuery, "query parameters are not permitted in the URL"))
		}
	case cc.Service != nil:
		sp := p.Child("service")
		s := cc.Service
		if s.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), "service name is required"))
		} else {
			for _, msg := range utilvalidation.IsDNS1123Label(s.Name) {
				errs = append(errs, field.Invalid(sp.Child("name"), s.Name, msg))
			}
		}
		if s.Namespace == "" {
			errs = append(errs, field.Required(sp.Child("namespace"), "service namespace is required"))
		} else {
			for _, msg := range utilvalidation.IsDNS1123Label(s.Namespace) {
				errs = append(errs, field.Invalid(sp.Child("namespace"), s.Namespace, msg))
			}
		}
		if s.Path != nil && *s.Path != "" && !strings.HasPrefix(*s.Path, "/") {
			errs = append(errs, field.Invalid(sp.Child("path"), *s.Path, "must start with a '/'"))
		}
		if s.Port != nil {
			for _, msg := range utilvalidation.IsValidPortNum(int(*s.Port)) {
				errs = append(errs, field.Invalid(sp.Child("port"), *s.Port, msg))
			}
		}
	default:
		errs = append(errs, field.Required(p, "exactly one of url or service is required"))
	}
	return errs
}

var supportedOperations = sets.New(string(admissionregistrationv1.Create), string(admissionregistrationv1.Update),
	string(admissionregistrationv1.Delete), string(admissionregistrationv1.Connect), string(admissionregistrationv1.OperationAll))

func validateRuleWithOperations(r *admissionregistrationv1.RuleWithOperations, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	op := p.Child("operations")
	if len(r.Operations) == 0 {
		errs = append(errs, field.Required(op, ""))
	}
	if len(r.Operations) > 1 && hasWildcard(toStrings(r.Operations)) {
		errs = append(errs, field.Invalid(op, r.Operations, "if '*' is present, must not specify other operations"))
	}
	for i, o := range r.Operations {
		if !supportedOperations.Has(string(o)) {
			errs = append(errs, field.NotSupported(op.Index(i), o, sets.List(supportedOperations)))
		}
	}
	return append(errs, validateRule(&r.Rule, p)...)
}

func toStrings[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}

func hasWildcard(s []string) bool {
	for _, v := range s {
		if v == "*" {
			return true
		}
	}
	return false
}

func validateRule(r *admissionregistrationv1.Rule, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(r.APIGroups) == 0 {
		errs = append(errs, field.Required(p.Child("apiGroups"), ""))
	}
	if len(r.APIGroups) > 1 && hasWildcard(r.APIGroups) {
		errs = append(errs, field.Invalid(p.Child("apiGroups"), r.APIGroups, "if '*' is present, must not specify other API groups"))
	}
	if len(r.APIVersions) == 0 {
		errs = append(errs, field.Required(p.Child("apiVersions"), ""))
	}
	if len(r.APIVersions) > 1 && hasWildcard(r.APIVersions) {
		errs = append(errs, field.Invalid(p.Child("apiVersions"), r.APIVersions, "if '*' is present, must not specify other API versions"))
	}
	for i, v := range r.APIVersions {
		if v == "" {
			errs = append(errs, field.Required(p.Child("apiVersions").Index(i), ""))
		}
	}
	rp := p.Child("resources")
	if len(r.Resources) == 0 {
		errs = append(errs, field.Required(rp, ""))
	}
	// As Kubernetes: "*" and "*/*" cover every resource, so nothing may
	// stand beside them, and "a/*" beside "a/x" says x twice.
	seen := sets.New[string]()
	subWildcardOf := sets.New[string]()
	for i, res := range r.Resources {
		if res == "" {
			errs = append(errs, field.Required(rp.Index(i), ""))
			continue
		}
		if seen.Has(res) {
			errs = append(errs, field.Duplicate(rp.Index(i), res))
		}
		seen.Insert(res)
		parts := strings.SplitN(res, "/", 2)
		if len(parts) == 2 && parts[1] == "" {
			errs = append(errs, field.Invalid(rp.Index(i), res, "must not end with '/'"))
		}
		if len(parts) == 2 && parts[1] == "*" {
			subWildcardOf.Insert(parts[0])
		}
	}
	if len(r.Resources) > 1 && (seen.Has("*") || seen.Has("*/*")) {
		errs = append(errs, field.Invalid(rp, r.Resources, "if '*' is present, must not specify other resources"))
	}
	for i, res := range r.Resources {
		parts := strings.SplitN(res, "/", 2)
		if len(parts) == 2 && parts[1] != "*" && (subWildcardOf.Has(parts[0]) || subWildcardOf.Has("*")) && !seen.Has("*/*") {
			errs = append(errs, field.Invalid(rp.Index(i), res, fmt.Sprintf("if '%s/*' is present, must not specify %s", parts[0], res)))
		}
	}
	if r.Scope != nil {
		switch *r.Scope {
		case admissionregistrationv1.ClusterScope, admissionregistrationv1.NamespacedScope, admissionregistrationv1.AllScopes:
		default:
			errs = append(errs, field.NotSupported(p.Child("scope"), *r.Scope, []string{string(admissionregistrationv1.ClusterScope), string(admissionregistrationv1.NamespacedScope), string(admissionregistrationv1.AllScopes)}))
		}
	}
	return errs
}

func validateFailurePolicy(fp *admissionregistrationv1.FailurePolicyType, p *field.Path) field.ErrorList {
	if fp != nil && *fp != admissionregistrationv1.Fail && *fp != admissionregistrationv1.Ignore {
		return field.ErrorList{field.NotSupported(p, *fp, []string{string(admissionregistrationv1.Fail), string(admissionregistrationv1.Ignore)})}
	}
	return nil
}

func validateMatchPolicy(mp *admissionregistrationv1.MatchPolicyType, p *field.Path) field.ErrorList {
	if mp != nil && *mp != admissionregistrationv1.Exact && *mp != admissionregistrationv1.Equivalent {
		return field.ErrorList{field.NotSupported(p, *mp, []string{string(admissionregistrationv1.Exact), string(admissionregistrationv1.Equivalent)})}
	}
	return nil
}

// expr is a CEL expression to compile with the return types its field allows.
type expr struct {
	text  string
	types []*celgo.Type
}

func (e expr) GetExpression() string           { return e.text }
func (e expr) ReturnTypes() []*celgo.Type      { return e.types }
func (e expr) GetName() string                 { return "" }
func (e namedExpr) GetName() string            { return e.name }
func (e namedExpr) GetExpression() string      { return e.text }
func (e namedExpr) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.AnyType} }

// namedExpr is a policy variable.
type namedExpr struct{ name, text string }

var (
	baseEnvOnce sync.Once
	baseEnv     *environment.EnvSet
)

// compiler is a fresh compiler with the variables and params the policy
// declares: expressions are checked as the admission plugins will compile
// them, so what is accepted here also runs there.
func compiler() (*admissioncel.CompositedCompiler, error) {
	baseEnvOnce.Do(func() { baseEnv = environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()) })
	return admissioncel.NewCompositedCompiler(baseEnv)
}

// compileErr is the field error of one expression, nil when it compiles.
func compileErr(c *admissioncel.CompositedCompiler, e expr, opts admissioncel.OptionalVariableDeclarations, p *field.Path) *field.Error {
	res := c.CompileCELExpression(e, opts, environment.StoredExpressions)
	if res.Error == nil {
		return nil
	}
	return field.Invalid(p, e.text, fmt.Sprintf("compilation failed: %s", res.Error.Detail))
}

func validateMatchConditions(conds []admissionregistrationv1.MatchCondition, p *field.Path, c *admissioncel.CompositedCompiler, opts admissioncel.OptionalVariableDeclarations) field.ErrorList {
	var errs field.ErrorList
	if len(conds) > maxMatchConditions {
		errs = append(errs, field.TooMany(p, len(conds), maxMatchConditions))
	}
	names := sets.New[string]()
	for i, m := range conds {
		ip := p.Index(i)
		switch {
		case m.Name == "":
			errs = append(errs, field.Required(ip.Child("name"), ""))
		case names.Has(m.Name):
			errs = append(errs, field.Duplicate(ip.Child("name"), m.Name))
		default:
			for _, msg := range utilvalidation.IsQualifiedName(m.Name) {
				errs = append(errs, field.Invalid(ip.Child("name"), m.Name, msg))
			}
		}
		names.Insert(m.Name)
		if m.Expression == "" {
			errs = append(errs, field.Required(ip.Child("expression"), ""))
			continue
		}
		if c == nil {
			var err error
			if c, err = compiler(); err != nil {
				return append(errs, field.InternalError(p, err))
			}
		}
		if e := compileErr(c, expr{m.Expression, []*celgo.Type{celgo.BoolType}}, opts, ip.Child("expression")); e != nil {
			errs = append(errs, e)
		}
	}
	return errs
}

var supportedReasons = sets.New(string(metav1.StatusReasonUnauthorized), string(metav1.StatusReasonForbidden),
	string(metav1.StatusReasonInvalid), string(metav1.StatusReasonRequestEntityTooLarge))

// ValidatePolicy checks a ValidatingAdmissionPolicy, its CEL expressions
// compiled.
func ValidatePolicy(pol *admissionregistrationv1.ValidatingAdmissionPolicy) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	spec := &pol.Spec
	if pk := spec.ParamKind; pk != nil {
		pp := sp.Child("paramKind")
		if pk.Kind == "" {
			errs = append(errs, field.Required(pp.Child("kind"), ""))
		}
		if pk.APIVersion == "" {
			errs = append(errs, field.Required(pp.Child("apiVersion"), ""))
		} else if gv, err := schema.ParseGroupVersion(pk.APIVersion); err != nil || gv.Version == "" {
			errs = append(errs, field.Invalid(pp.Child("apiVersion"), pk.APIVersion, "must be a group/version"))
		}
	}
	if spec.MatchConstraints == nil {
		errs = append(errs, field.Required(sp.Child("matchConstraints"), ""))
	} else {
		mp := sp.Child("matchConstraints")
		errs = append(errs, validateMatchResources(spec.MatchConstraints, mp)...)
		if len(spec.MatchConstraints.ResourceRules) == 0 {
			errs = append(errs, field.Required(mp.Child("resourceRules"), ""))
		}
	}
	errs = append(errs, validateFailurePolicy(spec.FailurePolicy, sp.Child("failurePolicy"))...)
	if len(spec.Validations) == 0 && len(spec.AuditAnnotations) == 0 {
		errs = append(errs, field.Required(sp.Child("validations"), "validations or auditAnnotations must contain at least one item"))
	}
	c, err := compiler()
	if err != nil {
		return append(errs, field.InternalError(sp, err))
	}
	opts := admissioncel.OptionalVariableDeclarations{HasParams: spec.ParamKind != nil, HasAuthorizer: true}
	vnames := sets.New[string]()
	for i, v := range spec.Variables {
		vp := sp.Child("variables").Index(i)
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(vp.Child("name"), ""))
		case vnames.Has(v.Name):
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		vnames.Insert(v.Name)
		if v.Expression == "" {
			errs = append(errs, field.Required(vp.Child("expression"), ""))
			continue
		}
		if res := c.CompileAndStoreVariable(namedExpr{v.Name, v.Expression}, opts, environment.StoredExpressions); res.Error != nil {
			errs = append(errs, field.Invalid(vp.Child("expression"), v.Expression, "compilation failed: "+res.Error.Detail))
		}
	}
	errs = append(errs, validateMatchConditions(spec.MatchConditions, sp.Child("matchConditions"), c, opts)...)
	for i, v := range spec.Validations {
		vp := sp.Child("validations").Index(i)
		if v.Expression == "" {
			errs = append(errs, field.Required(vp.Child("expression"), ""))
		} else if e := compileErr(c, expr{v.Expression, []*celgo.Type{celgo.BoolType}}, opts, vp.Child("expression")); e != nil {
			errs = append(errs, e)
		}
		if strings.ContainsAny(v.Message, "\r\n") {
			errs = append(errs, field.Invalid(vp.Child("message"), v.Message, "message must not contain line breaks"))
		}
		if v.Reason != nil && !supportedReasons.Has(string(*v.Reason)) {
			errs = append(errs, field.NotSupported(vp.Child("reason"), *v.Reason, sets.List(supportedReasons)))
		}
		if v.MessageExpression != "" {
			mopts := opts
			mopts.HasAuthorizer = false
			if e := compileErr(c, expr{v.MessageExpression, []*celgo.Type{celgo.StringType}}, mopts, vp.Child("messageExpression")); e != nil {
				errs = append(errs, e)
			}
		}
	}
	keys := sets.New[string]()
	for i, a := range spec.AuditAnnotations {
		ap := sp.Child("auditAnnotations").Index(i)
		switch {
		case a.Key == "":
			errs = append(errs, field.Required(ap.Child("key"), ""))
		case keys.Has(a.Key):
			errs = append(errs, field.Duplicate(ap.Child("key"), a.Key))
		default:
			for _, msg := range utilvalidation.IsQualifiedName(pol.Name + "/" + a.Key) {
				errs = append(errs, field.Invalid(ap.Child("key"), a.Key, msg))
			}
		}
		keys.Insert(a.Key)
		if a.ValueExpression == "" {
			errs = append(errs, field.Required(ap.Child("valueExpression"), ""))
		} else if e := compileErr(c, expr{a.ValueExpression, []*celgo.Type{celgo.StringType, celgo.NullType}}, opts, ap.Child("valueExpression")); e != nil {
			errs = append(errs, e)
		}
	}
	return errs
}

func validateMatchResources(m *admissionregistrationv1.MatchResources, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateMatchPolicy(m.MatchPolicy, p.Child("matchPolicy"))...)
	errs = append(errs, validateSelector(m.NamespaceSelector, p.Child("namespaceSelector"))...)
	errs = append(errs, validateSelector(m.ObjectSelector, p.Child("objectSelector"))...)
	for _, set := range []struct {
		name  string
		rules []admissionregistrationv1.NamedRuleWithOperations
	}{{"resourceRules", m.ResourceRules}, {"excludeResourceRules", m.ExcludeResourceRules}} {
		name, rules := set.name, set.rules
		for i := range rules {
			rp := p.Child(name).Index(i)
			errs = append(errs, validateRuleWithOperations(&rules[i].RuleWithOperations, rp)...)
			for j, n := range rules[i].ResourceNames {
				if n == "" {
					errs = append(errs, field.Required(rp.Child("resourceNames").Index(j), ""))
				}
			}
		}
	}
	return errs
}

var supportedActions = sets.New(string(admissionregistrationv1.Deny), string(admissionregistrationv1.Warn), string(admissionregistrationv1.Audit))

// ValidateBinding checks a ValidatingAdmissionPolicyBinding.
func ValidateBinding(b *admissionregistrationv1.ValidatingAdmissionPolicyBinding) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	if b.Spec.PolicyName == "" {
		errs = append(errs, field.Required(sp.Child("policyName"), ""))
	}
	ap := sp.Child("validationActions")
	if len(b.Spec.ValidationActions) == 0 {
		errs = append(errs, field.Required(ap, ""))
	}
	seen := sets.New[string]()
	for i, a := range b.Spec.ValidationActions {
		if seen.Has(string(a)) {
			errs = append(errs, field.Duplicate(ap.Index(i), a))
		}
		seen.Insert(string(a))
		if !supportedActions.Has(string(a)) {
			errs = append(errs, field.NotSupported(ap.Index(i), a, sets.List(supportedActions)))
		}
	}
	if seen.Has(string(admissionregistrationv1.Deny)) && seen.Has(string(admissionregistrationv1.Warn)) {
		errs = append(errs, field.Invalid(ap, b.Spec.ValidationActions, "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)"))
	}
	if r := b.Spec.ParamRef; r != nil {
		rp := sp.Child("paramRef")
		switch {
		case r.Name != "" && r.Selector != nil:
			errs = append(errs, field.Forbidden(rp.Child("name"), "name and selector are mutually exclusive"))
		case r.Name == "" && r.Selector == nil:
			errs = append(errs, field.Required(rp, "one of name or selector must be specified"))
		}
		errs = append(errs, validateSelector(r.Selector, rp.Child("selector"))...)
		if r.Namespace != "" {
			for _, msg := range utilvalidation.IsDNS1123Label(r.Namespace) {
				errs = append(errs, field.Invalid(rp.Child("namespace"), r.Namespace, msg))
			}
		}
		switch {
		case r.ParameterNotFoundAction == nil:
			errs = append(errs, field.Required(rp.Child("parameterNotFoundAction"), ""))
		case *r.ParameterNotFoundAction != admissionregistrationv1.DenyAction && *r.ParameterNotFoundAction != admissionregistrationv1.AllowAction:
			errs = append(errs, field.NotSupported(rp.Child("parameterNotFoundAction"), *r.ParameterNotFoundAction, []string{string(admissionregistrationv1.AllowAction), string(admissionregistrationv1.DenyAction)}))
		}
	}
	if m := b.Spec.MatchResources; m != nil {
		errs = append(errs, validateMatchResources(m, sp.Child("matchResources"))...)
	}
	return errs
}
