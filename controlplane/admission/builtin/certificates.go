package builtin

import (
	"context"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/nodeauth"
	"github.com/petrel-project/petrel/controlplane/rbac"
	"github.com/petrel-project/petrel/controlplane/registry/certificates"
)

// CertificateRequester records who asks for a certificate, as Kubernetes
// does: the signer and the approver decide on it, never on what the body
// claims.
type CertificateRequester struct{}

// Name names the plugin.
func (p *CertificateRequester) Name() string { return "CertificateRequester" }

// Handles creates.
func (p *CertificateRequester) Handles(op admission.Operation) bool { return op == admission.Create }

// Admit sets the request's user.
func (p *CertificateRequester) Admit(ctx context.Context, a *admission.Attributes) error {
	csr, ok := a.Object.(*certificatesv1.CertificateSigningRequest)
	if !ok || !a.HasUser {
		return nil
	}
	csr.Spec.Username, csr.Spec.UID = a.User.Name, a.User.UID
	csr.Spec.Groups = append([]string(nil), a.User.Groups...)
	return nil
}

// CertificateApproval asks, as Kubernetes' CertificateApproval and
// CertificateSigning admission do, for the approve verb on the request's
// signer to change its Approved/Denied conditions, and for the sign verb
// to set its certificate: the rights are per signer
// (certificates.k8s.io/signers, name "<signer>" or "<domain>/*").
type CertificateApproval struct {
	authz *rbac.Authorizer
	nodes *nodeauth.Authorizer
}

// Name names the plugin.
func (p *CertificateApproval) Name() string { return "CertificateApproval" }

// Handles updates.
func (p *CertificateApproval) Handles(op admission.Operation) bool { return op == admission.Update }

// Validate checks the approve and sign rights.
func (p *CertificateApproval) Validate(ctx context.Context, a *admission.Attributes) error {
	next, ok := a.Object.(*certificatesv1.CertificateSigningRequest)
	if !ok || p.authz == nil || !a.HasUser || rbac.IsMaster(a.User.Groups) {
		return nil
	}
	cur := a.OldObject.(*certificatesv1.CertificateSigningRequest)
	var verb string
	switch {
	case a.Subresource == certificates.CSRApprovalSubresource && certificates.CSRCondition(next) != certificates.CSRCondition(cur):
		verb = "approve"
	case a.Subresource == "status" && string(next.Status.Certificate) != string(cur.Status.Certificate):
		verb = "sign"
	default:
		return nil
	}
	signer := next.Spec.SignerName
	names := []string{signer}
	if domain, _, ok := strings.Cut(signer, "/"); ok {
		names = append(names, domain+"/*")
	}
	for _, name := range names {
		attrs := rbac.Attributes{User: a.User.Name, Groups: a.User.Groups, Verb: verb, ResourceRequest: true,
			APIGroup: certificatesv1.GroupName, Resource: "signers", Name: name}
		if allowed(p.authz, p.nodes, attrs) {
			return nil
		}
	}
	return apierrors.NewForbidden(certificatesv1.Resource("certificatesigningrequests"), cur.Name,
		fmt.Errorf("user not permitted to %s requests with signerName %q", verb, signer))
}
