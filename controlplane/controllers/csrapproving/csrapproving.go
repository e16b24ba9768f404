// Package csrapproving approves the CertificateSigningRequests nodes make
// for their client certificates, as Kubernetes' csrapproving controller
// does: a request for signer kubernetes.io/kube-apiserver-client-kubelet
// whose subject is system:node:<name> in system:nodes is approved when a
// SubjectAccessReview says its requester may create
// certificatesigningrequests/nodeclient (a bootstrap token, by the default
// binding for system:bootstrappers) or, for a node renewing its own
// certificate, certificatesigningrequests/selfnodeclient (system:nodes).
// Anything else is left for an admin (`kubectl certificate approve`).
package csrapproving

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
	"github.com/petrel-project/petrel/controlplane/registry/certificates"
)

// Subresources of certificatesigningrequests the approver asks about.
const (
	NodeClient     = "nodeclient"
	SelfNodeClient = "selfnodeclient"
)

// Controller approves node client certificate requests.
type Controller struct {
	client kubernetes.Interface
	csrs   certlisters.CertificateSigningRequestLister
	// allowed asks whether the requester of csr may create
	// certificatesigningrequests/<subresource>.
	allowed func(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, subresource string) (bool, error)
	loop    *loop.Loop
}

// New builds the controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	inf := factory.Certificates().V1().CertificateSigningRequests()
	c := &Controller{client: cs, csrs: inf.Lister()}
	c.allowed = c.subjectAccessReview
	c.loop = loop.New("csr approver", loop.Simple(c.sync))
	c.loop.Synced(inf.Informer().HasSynced)
	_, _ = inf.Informer().AddEventHandler(c.loop.Handlers())
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) { c.loop.Run(ctx, 1) }

func (c *Controller) sync(ctx context.Context, name string) error {
	cur, err := c.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	csr := cur.DeepCopy()
	message, err := c.Decide(ctx, csr)
	if err != nil || message == "" {
		return err
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "AutoApproved", Message: message,
		LastUpdateTime: metav1.Now(),
	})
	_, err = c.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: "csr-approver"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("approving %s: %w", csr.Name, err)
	}
	slog.Info("csr approver: approved", "csr", csr.Name, "requester", csr.Spec.Username, "message", message)
	return nil
}

// Decide says whether to approve csr: the approval message, or "" to leave
// it (decided already, issued, not a node client certificate, or its
// requester may not have it approved automatically).
func (c *Controller) Decide(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (string, error) {
	if len(csr.Status.Certificate) > 0 || certificates.CSRApproved(csr) || certificates.CSRDenied(csr) || certificates.CSRFailed(csr) {
		return "", nil
	}
	if csr.Spec.SignerName != certificates.KubeletClientSigner {
		return "", nil
	}
	req, err := certificates.ParseCSR(csr.Spec.Request)
	if err != nil {
		return "", nil // validation let it in; nothing to approve
	}
	if certificates.CheckKubeletClientCSR(req, csr.Spec.Usages) != nil {
		return "", nil
	}
	type recognizer struct {
		subresource, message string
		applies              bool
	}
	var tried []string
	for _, r := range []recognizer{
		// A node renewing its own certificate.
		{SelfNodeClient, "Auto approving self kubelet client certificate after SubjectAccessReview.", csr.Spec.Username == req.Subject.CommonName},
		{NodeClient, "Auto approving kubelet client certificate after SubjectAccessReview.", true},
	} {
		if !r.applies {
			continue
		}
		tried = append(tried, r.subresource)
		ok, err := c.allowed(ctx, csr, r.subresource)
		if err != nil {
			return "", err
		}
		if ok {
			return r.message, nil
		}
	}
	slog.Info("csr approver: not approved automatically", "csr", csr.Name, "requester", csr.Spec.Username, "tried", tried)
	return "", nil
}

// subjectAccessReview asks the API server, as Kubernetes' approver does.
func (c *Controller) subjectAccessReview(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, subresource string) (bool, error) {
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range csr.Spec.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: csr.Spec.Username, UID: csr.Spec.UID, Groups: csr.Spec.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Group: certificatesv1.GroupName, Resource: "certificatesigningrequests",
			Verb: "create", Subresource: subresource},
	}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := c.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("subject access review for %s: %w", csr.Name, err)
	}
	return out.Status.Allowed, nil
}
