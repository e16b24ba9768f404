// Package webhook puts Kubernetes' dynamic admission into Petrel's chain:
// the MutatingAdmissionWebhook, ValidatingAdmissionWebhook and
// ValidatingAdmissionPolicy plugins of k8s.io/apiserver, driven by the
// admissionregistration.k8s.io/v1 objects through client-go informers, each
// wrapped as a member of an admission.Chain. The adapters here translate
// Petrel's attributes, objects, warnings and reinvocation into
// k8s.io/apiserver's; the matching (rules, selectors, matchConditions,
// matchPolicy), the AdmissionReview calls, JSONPatch, failure policies,
// timeouts, side effects and the CEL policies are upstream's own.
package webhook

import (
	"context"
	"fmt"
	"sync/atomic"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	upstream "k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/mutating"
	webhookvalidating "k8s.io/apiserver/pkg/admission/plugin/webhook/validating"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// Config is what the plugins need.
type Config struct {
	// Registry is the served resources: their defaults, kinds and
	// equivalents under other versions.
	Registry *generic.Registry
	// Client, Dynamic and Informers reach the API server itself (the
	// server is its own client): webhook configurations, policies and
	// bindings, namespaces for namespaceSelector, Services and
	// EndpointSlices to reach webhooks, policies' params.
	Client    kubernetes.Interface
	Dynamic   dynamic.Interface
	Informers informers.SharedInformerFactory
	// Authorizer answers the `authorizer` variable of CEL expressions.
	Authorizer authorizer.UnconditionalAuthorizer
	// Stop ends the policies' background work.
	Stop <-chan struct{}
	// Resolver reaches Service-referenced webhooks; nil makes one over
	// Informers (NewServiceResolver).
	Resolver webhookutil.ServiceResolver
}

// Plugins are the three dynamic admission plugins in Kubernetes' order:
// mutating webhooks (after the built-in mutating plugins), then
// ValidatingAdmissionPolicy and validating webhooks (before ResourceQuota).
type Plugins struct {
	Mutating          *Mutating
	Policy            *Policy
	ValidatingWebhook *Validating
}

// Chain lists the plugins for an admission.Chain.
func (p *Plugins) Chain() []admission.Interface {
	return []admission.Interface{p.Mutating, p.Policy, p.ValidatingWebhook}
}

// New builds and initializes the plugins; they wait for their informers
// (up to Kubernetes' 10 s) on the first writes after the factory starts.
func New(cfg Config) (*Plugins, error) {
	mapper := newResourceMapper(cfg.Registry)
	base := &adapter{reg: cfg.Registry, mapper: mapper}
	resolver := cfg.Resolver
	if resolver == nil {
		resolver = NewServiceResolver(cfg.Informers, cfg.Stop)
	}

	mut, err := mutating.NewMutatingWebhook(nil)
	if err != nil {
		return nil, fmt.Errorf("mutating webhook plugin: %w", err)
	}
	mut.SetServiceResolver(resolver)
	mut.SetExternalKubeClientSet(cfg.Client)
	mut.SetExternalKubeInformerFactory(cfg.Informers)
	mut.SetUnconditionalAuthorizer(cfg.Authorizer)
	if err := mut.ValidateInitialization(); err != nil {
		return nil, fmt.Errorf("mutating webhook plugin: %w", err)
	}

	val, err := webhookvalidating.NewValidatingAdmissionWebhook(nil)
	if err != nil {
		return nil, fmt.Errorf("validating webhook plugin: %w", err)
	}
	val.SetServiceResolver(resolver)
	val.SetExternalKubeClientSet(cfg.Client)
	val.SetExternalKubeInformerFactory(cfg.Informers)
	val.SetUnconditionalAuthorizer(cfg.Authorizer)
	if err := val.ValidateInitialization(); err != nil {
		return nil, fmt.Errorf("validating webhook plugin: %w", err)
	}

	pol, err := validating.NewPlugin(nil)
	if err != nil {
		return nil, fmt.Errorf("validating admission policy plugin: %w", err)
	}
	pol.SetExternalKubeClientSet(cfg.Client)
	pol.SetExternalKubeInformerFactory(cfg.Informers)
	pol.SetDynamicClient(cfg.Dynamic)
	pol.SetRESTMapper(restMapper{mapper})
	pol.SetDrainedNotification(cfg.Stop)
	pol.SetUnconditionalAuthorizer(cfg.Authorizer)
	if err := pol.ValidateInitialization(); err != nil {
		return nil, fmt.Errorf("validating admission policy plugin: %w", err)
	}

	arv1 := cfg.Informers.Admissionregistration().V1()
	mutIdle, err := idleWhileEmpty(arv1.MutatingWebhookConfigurations().Informer())
	if err != nil {
		return nil, err
	}
	valIdle, err := idleWhileEmpty(arv1.ValidatingWebhookConfigurations().Informer())
	if err != nil {
		return nil, err
	}
	polIdle, err := idleWhileEmpty(arv1.ValidatingAdmissionPolicyBindings().Informer())
	if err != nil {
		return nil, err
	}
	return &Plugins{
		Mutating:          &Mutating{adapter: base, plugin: mut, idle: mutIdle},
		Policy:            &Policy{adapter: base, plugin: pol, idle: polIdle},
		ValidatingWebhook: &Validating{adapter: base, plugin: val, idle: valIdle},
	}, nil
}

// idleWhileEmpty is true while the informer has synced and holds nothing:
// no webhook or binding can match, so a write skips the plugin (and the
// conversion of its attributes). Before the sync the plugin itself waits.
// The count is kept by the informer's events, so the check costs a write
// two atomic loads.
func idleWhileEmpty(inf cache.SharedIndexInformer) (func() bool, error) {
	var n atomic.Int64
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { n.Add(1) },
		DeleteFunc: func(any) { n.Add(-1) },
	})
	if err != nil {
		return nil, fmt.Errorf("admission informer: %w", err)
	}
	// The handler's own sync: it has counted the initial list.
	return func() bool { return n.Load() == 0 && reg.HasSynced() }, nil
}

// Mutating is MutatingAdmissionWebhook in Petrel's chain.
type Mutating struct {
	*adapter
	plugin *mutating.Plugin
	idle   func() bool
}

// Name names the plugin.
func (m *Mutating) Name() string { return mutating.PluginName }

// Handles is every operation the plugin sees.
func (m *Mutating) Handles(admission.Operation) bool { return true }

// Admit calls the matching mutating webhooks, which may patch a.Object.
func (m *Mutating) Admit(ctx context.Context, a *admission.Attributes) error {
	if m.idle() {
		return nil
	}
	rec, o, err := m.attributes(a)
	if err != nil {
		return err
	}
	rc := rec.GetReinvocationContext()
	if a.Reinvoking && !rc.IsReinvoke() {
		rc.SetIsReinvoke()
	}
	var before runtime.Object
	if a.Object != nil {
		before = a.Object.DeepCopyObject()
	}
	err = m.plugin.Admit(withWarnings(ctx), rec, o)
	if rc.ShouldReinvoke() {
		a.Reinvoke = true
	}
	if before != nil && !apiequality.Semantic.DeepEqual(before, a.Object) {
		a.Changed = true
	}
	return err
}

// Validating is ValidatingAdmissionWebhook in Petrel's chain.
type Validating struct {
	*adapter
	plugin *webhookvalidating.Plugin
	idle   func() bool
}

// Name names the plugin.
func (v *Validating) Name() string { return webhookvalidating.PluginName }

// Handles is every operation the plugin sees.
func (v *Validating) Handles(admission.Operation) bool { return true }

// Validate calls the matching validating webhooks in parallel.
func (v *Validating) Validate(ctx context.Context, a *admission.Attributes) error {
	if v.idle() {
		return nil
	}
	rec, o, err := v.attributes(a)
	if err != nil {
		return err
	}
	return v.plugin.Validate(withWarnings(ctx), rec, o)
}

// Policy is ValidatingAdmissionPolicy in Petrel's chain.
type Policy struct {
	*adapter
	plugin *validating.Plugin
	idle   func() bool
}

// Name names the plugin.
func (p *Policy) Name() string { return validating.PluginName }

// Handles is every operation the plugin sees.
func (p *Policy) Handles(admission.Operation) bool { return true }

// Validate evaluates the bound policies' CEL validations.
func (p *Policy) Validate(ctx context.Context, a *admission.Attributes) error {
	if p.idle() {
		return nil
	}
	rec, o, err := p.attributes(a)
	if err != nil {
		return err
	}
	return p.plugin.Validate(withWarnings(ctx), rec, o)
}

// scheme knows the built-in kinds; custom kinds are unstructured.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// adapter turns Petrel's attributes into k8s.io/apiserver's.
type adapter struct {
	reg    *generic.Registry
	mapper *resourceMapper
}

const extKey = "webhook.attributes"

// attributes is the upstream record of a write, made once per admission
// and kept in a.Ext, so that the second (reinvocation) pass and the
// validating plugins share its reinvocation state and annotations.
func (ad *adapter) attributes(a *admission.Attributes) (upstream.Attributes, upstream.ObjectInterfaces, error) {
	o := &objects{scheme: scheme, mapper: ad.mapper}
	if st := ad.reg.Store(a.Resource); st != nil {
		o.defaults = st.Resource().Default
	}
	if rec, ok := a.Ext[extKey].(upstream.Attributes); ok {
		return rec, o, nil
	}
	obj, err := typed(a.Object, a.Kind, false)
	if err != nil {
		return nil, nil, err
	}
	old, err := typed(a.OldObject, a.Kind, true)
	if err != nil {
		return nil, nil, err
	}
	rec := upstream.NewAttributesRecord(obj, old, a.Kind, a.Namespace, a.Name, a.Resource, a.Subresource,
		upstream.Operation(a.Operation), options(a), a.DryRun, userInfo(a))
	if a.Ext == nil {
		a.Ext = map[string]any{}
	}
	a.Ext[extKey] = rec
	return rec, o, nil
}

// typed makes sure obj says its apiVersion and kind (webhooks receive it
// as JSON, and upstream compares kinds to decide on conversion). The object
// being written is ours to change; a stored one (old) may be the watch
// cache's, shared, so it is copied first.
func typed(obj runtime.Object, gvk schema.GroupVersionKind, shared bool) (runtime.Object, error) {
	if obj == nil {
		return nil, nil
	}
	if obj.GetObjectKind().GroupVersionKind() == gvk {
		return obj, nil
	}
	if shared {
		obj = obj.DeepCopyObject()
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, nil
}
