package server

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/admission/webhook"
	"github.com/petrel-project/petrel/controlplane/controllers/policystatus"
	"github.com/petrel-project/petrel/controlplane/rbac"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// dynamicAdmission builds the webhook and policy plugins over the server's
// own loopback client and starts their informers, which sync once the
// server serves. Every server runs them: each admits its own writes.
// The resolver of Service references it returns serves CRD conversion
// webhooks too.
func dynamicAdmission(ctx context.Context, kubeconfig string, reg *generic.Registry, authz *rbac.Authorizer) ([]admission.Interface, webhookutil.ServiceResolver, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("admission webhooks: kubeconfig: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("admission webhooks: dynamic client: %w", err)
	}
	pcfg := *cfg
	pcfg.ContentType = runtime.ContentTypeProtobuf
	pcfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(&pcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("admission webhooks: client: %w", err)
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	resolver := webhook.NewServiceResolver(factory, ctx.Done())
	plugins, err := webhook.New(webhook.Config{Registry: reg, Client: cs, Dynamic: dyn, Informers: factory,
		Authorizer: celAuthorizer{authz}, Stop: ctx.Done(), Resolver: resolver})
	if err != nil {
		return nil, nil, fmt.Errorf("admission webhooks: %w", err)
	}
	factory.Start(ctx.Done())
	return plugins.Chain(), resolver, nil
}

// celAuthorizer answers CEL's `authorizer` checks in matchConditions and
// policies from the RBAC policy (everything is allowed without RBAC).
type celAuthorizer struct{ authz *rbac.Authorizer }

// Authorize decides attrs by RBAC.
func (c celAuthorizer) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if c.authz == nil {
		return authorizer.DecisionAllow, "", nil
	}
	var name string
	var groups []string
	if u := a.GetUser(); u != nil {
		name, groups = u.GetName(), u.GetGroups()
	}
	ok, reason := c.authz.Authorize(rbac.Attributes{User: name, Groups: groups, Verb: a.GetVerb(),
		ResourceRequest: a.IsResourceRequest(), APIGroup: a.GetAPIGroup(), Resource: a.GetResource(),
		Subresource: a.GetSubresource(), Namespace: a.GetNamespace(), Name: a.GetName(), Path: a.GetPath()})
	if ok {
		return authorizer.DecisionAllow, reason, nil
	}
	return authorizer.DecisionNoOpinion, reason, nil
}

// policyStatus is the ValidatingAdmissionPolicy type-checking controller,
// with the server's own OpenAPI (through discovery, so custom kinds are
// known) and a discovery REST mapper, as kube-controller-manager runs it.
func policyStatus(cs kubernetes.Interface, factory informers.SharedInformerFactory) *policystatus.Controller {
	disc := cs.Discovery()
	return policystatus.New(cs, factory, &resolver.ClientDiscoveryResolver{Discovery: disc},
		restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)))
}
