// Package policystatus type-checks ValidatingAdmissionPolicies, as
// Kubernetes' validatingadmissionpolicy-status-controller does: each new
// generation of a policy is checked against the schemas of the kinds it
// matches (k8s.io/apiserver's TypeChecker), and the warnings go to
// status.typeChecking with status.observedGeneration.
package policystatus

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listers "k8s.io/client-go/listers/admissionregistration/v1"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// Controller keeps the policies' type-checking status.
type Controller struct {
	client   kubernetes.Interface
	policies listers.ValidatingAdmissionPolicyLister
	checker  *validating.TypeChecker
	loop     *loop.Loop
}

// New builds the controller on a shared informer factory. schemas gives the
// OpenAPI schema of a kind (the server's own, through discovery) and mapper
// the kinds of the resources policies match.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, schemas resolver.SchemaResolver, mapper meta.RESTMapper) *Controller {
	inf := factory.Admissionregistration().V1().ValidatingAdmissionPolicies()
	c := &Controller{client: cs, policies: inf.Lister(), checker: &validating.TypeChecker{SchemaResolver: schemas, RestMapper: mapper}}
	c.loop = loop.New("validating admission policy status", loop.Simple(c.sync))
	c.loop.Synced(inf.Informer().HasSynced)
	_, _ = inf.Informer().AddEventHandler(c.loop.Handlers())
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) { c.loop.Run(ctx, 1) }

func (c *Controller) sync(ctx context.Context, name string) error {
	p, err := c.policies.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.Generation <= p.Status.ObservedGeneration {
		return nil
	}
	next := p.DeepCopy()
	next.Status.ObservedGeneration = p.Generation
	next.Status.TypeChecking = &admissionregistrationv1.TypeChecking{ExpressionWarnings: c.checker.Check(p)}
	_, err = c.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().UpdateStatus(ctx, next, metav1.UpdateOptions{FieldManager: "validatingadmissionpolicy-status-controller"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("policy %s status: %w", name, err)
	}
	return nil
}
