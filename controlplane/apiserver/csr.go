package apiserver

import (
	"context"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/petrel-project/petrel/controlplane/rbac"
	"github.com/petrel-project/petrel/controlplane/registry"
)

// setRequester records who asks for a certificate, as Kubernetes does: the
// signer and the approver decide on it, never on what the body claims.
func setRequester(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) {
	u, ok := userFrom(ctx)
	if !ok {
		return
	}
	csr.Spec.Username, csr.Spec.UID = u.Name, u.UID
	csr.Spec.Groups = append([]string(nil), u.Groups...)
}

// admitCSRUpdate asks, as Kubernetes' CertificateApproval and
// CertificateSigning admission do, for the approve verb on the request's
// signer to change its Approved/Denied conditions, and for the sign verb
// to set its certificate: the rights are per signer
// (certificates.k8s.io/signers, name "<signer>" or "<domain>/*").
func (s *Server) admitCSRUpdate(ctx context.Context, req *request, next, cur *certificatesv1.CertificateSigningRequest) error {
	if s.cfg.Authorizer == nil {
		return nil
	}
	u, ok := userFrom(ctx)
	if !ok || rbac.IsMaster(u.Groups) {
		return nil
	}
	var verb string
	switch {
	case req.subresource == registry.CSRApprovalSubresource && registry.CSRCondition(next) != registry.CSRCondition(cur):
		verb = "approve"
	case req.subresource == "status" && string(next.Status.Certificate) != string(cur.Status.Certificate):
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
		a := rbac.Attributes{User: u.Name, Groups: u.Groups, Verb: verb, ResourceRequest: true,
			APIGroup: certificatesv1.GroupName, Resource: "signers", Name: name}
		if allowed, _ := s.allowed(a); allowed {
			return nil
		}
	}
	return apierrors.NewForbidden(certificatesv1.Resource("certificatesigningrequests"), cur.Name,
		fmt.Errorf("user not permitted to %s requests with signerName %q", verb, signer))
}
