// Package certificates holds the strategy of certificates.k8s.io/v1
// CertificateSigningRequests and the checks on them that the admission
// plugins and the approving and signing controllers share, so that what a
// request may hold is decided in one place.
package certificates

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CSRApprovalSubresource is where `kubectl certificate approve|deny` writes
// a CertificateSigningRequest's Approved or Denied condition.
const CSRApprovalSubresource = "approval"

// validKeyUsages are the usages a CertificateSigningRequest may ask for, as
// Kubernetes lists them.
var validKeyUsages = func() map[certificatesv1.KeyUsage]bool {
	m := map[certificatesv1.KeyUsage]bool{}
	for _, u := range []certificatesv1.KeyUsage{
		certificatesv1.UsageSigning, certificatesv1.UsageDigitalSignature, certificatesv1.UsageContentCommitment,
		certificatesv1.UsageKeyEncipherment, certificatesv1.UsageKeyAgreement, certificatesv1.UsageDataEncipherment,
		certificatesv1.UsageCertSign, certificatesv1.UsageCRLSign, certificatesv1.UsageEncipherOnly,
		certificatesv1.UsageDecipherOnly, certificatesv1.UsageAny, certificatesv1.UsageServerAuth,
		certificatesv1.UsageClientAuth, certificatesv1.UsageCodeSigning, certificatesv1.UsageEmailProtection,
		certificatesv1.UsageSMIME, certificatesv1.UsageIPsecEndSystem, certificatesv1.UsageIPsecTunnel,
		certificatesv1.UsageIPsecUser, certificatesv1.UsageTimestamping, certificatesv1.UsageOCSPSigning,
		certificatesv1.UsageMicrosoftSGC, certificatesv1.UsageNetscapeSGC,
	} {
		m[u] = true
	}
	return m
}()

// Resources are certificates.k8s.io/v1: CertificateSigningRequest,
// through which nodes (and anyone allowed) get client certificates signed by
// the cluster's CA.
func Resources() []*generic.Resource {
	return []*generic.Resource{{
		GVR: certificatesv1.SchemeGroupVersion.WithResource("certificatesigningrequests"), Kind: "CertificateSigningRequest",
		ShortNames: []string{"csr"}, HasStatus: true, Subresources: []string{CSRApprovalSubresource},
		New:     func() runtime.Object { return &certificatesv1.CertificateSigningRequest{} },
		NewList: func() runtime.Object { return &certificatesv1.CertificateSigningRequestList{} },
		PrepareForCreate: func(obj runtime.Object) {
			// What the requester is comes from authentication (the API
			// server fills it after this), never from the body.
			csr := obj.(*certificatesv1.CertificateSigningRequest)
			csr.Spec.Username, csr.Spec.UID, csr.Spec.Groups, csr.Spec.Extra = "", "", nil, nil
		},
		PrepareForUpdate: prepareCSRUpdate,
		Validate: func(obj runtime.Object) field.ErrorList {
			csr := obj.(*certificatesv1.CertificateSigningRequest)
			return append(validateCSRSpec(&csr.Spec), validateCSRStatus(&csr.Status)...)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateCSRUpdate(obj.(*certificatesv1.CertificateSigningRequest), old.(*certificatesv1.CertificateSigningRequest))
		},
		ValidateSubresourceUpdate: func(_ string, obj, old runtime.Object) field.ErrorList {
			return validateCSRUpdate(obj.(*certificatesv1.CertificateSigningRequest), old.(*certificatesv1.CertificateSigningRequest))
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.signerName": obj.(*certificatesv1.CertificateSigningRequest).Spec.SignerName}
		},
		Columns: []generic.Column{
			printers.AgeColumn,
			printers.Col("SignerName", "string", func(o runtime.Object) interface{} {
				return o.(*certificatesv1.CertificateSigningRequest).Spec.SignerName
			}),
			printers.Col("Requestor", "string", func(o runtime.Object) interface{} { return o.(*certificatesv1.CertificateSigningRequest).Spec.Username }),
			printers.Col("RequestedDuration", "string", func(o runtime.Object) interface{} {
				if e := o.(*certificatesv1.CertificateSigningRequest).Spec.ExpirationSeconds; e != nil {
					return duration.HumanDuration(time.Duration(*e) * time.Second)
				}
				return "<none>"
			}),
			printers.Col("Condition", "string", func(o runtime.Object) interface{} { return CSRCondition(o.(*certificatesv1.CertificateSigningRequest)) }),
		},
	}}
}

// CSRCondition is the CONDITION column kubectl prints: Pending, or the
// Approved/Denied/Failed conditions joined, then Issued once signed.
func CSRCondition(csr *certificatesv1.CertificateSigningRequest) string {
	var parts []string
	for _, c := range csr.Status.Conditions {
		if c.Status == corev1.ConditionTrue || c.Status == "" {
			parts = append(parts, string(c.Type))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "Pending")
	}
	if len(csr.Status.Certificate) > 0 {
		parts = append(parts, "Issued")
	}
	return strings.Join(parts, ",")
}

// prepareCSRUpdate keeps, as Kubernetes' strategies do, the spec on every
// write but a create; the Approved and Denied conditions on the main
// resource and /status (only /approval decides); and everything but the
// conditions on /approval. Condition timestamps are filled when missing.
func prepareCSRUpdate(sub string, obj, old runtime.Object) {
	csr, prev := obj.(*certificatesv1.CertificateSigningRequest), old.(*certificatesv1.CertificateSigningRequest)
	csr.Spec = prev.Spec
	switch sub {
	case "", "status":
		keepConditions(csr, prev, certificatesv1.CertificateApproved)
		keepConditions(csr, prev, certificatesv1.CertificateDenied)
	case CSRApprovalSubresource:
		conditions := csr.Status.Conditions
		csr.Status = *prev.Status.DeepCopy()
		csr.Status.Conditions = conditions
	}
	now := metav1.Now()
	for i := range csr.Status.Conditions {
		c := &csr.Status.Conditions[i]
		if c.Status == "" {
			c.Status = corev1.ConditionTrue
		}
		if c.LastUpdateTime.IsZero() {
			c.LastUpdateTime = now
		}
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = now
			for _, p := range prev.Status.Conditions {
				if p.Type == c.Type && p.Status == c.Status && !p.LastTransitionTime.IsZero() {
					c.LastTransitionTime = p.LastTransitionTime
				}
			}
		}
	}
}

// keepConditions puts back prev's conditions of type t in place of csr's.
// When the writer sent them unchanged they stay where they are, so that a
// condition appended after them stays last.
func keepConditions(csr, prev *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) {
	of := func(cs []certificatesv1.CertificateSigningRequestCondition) []certificatesv1.CertificateSigningRequestCondition {
		var out []certificatesv1.CertificateSigningRequestCondition
		for _, c := range cs {
			if c.Type == t {
				out = append(out, c)
			}
		}
		return out
	}
	if apiequality.Semantic.DeepEqual(of(csr.Status.Conditions), of(prev.Status.Conditions)) {
		return
	}
	var kept []certificatesv1.CertificateSigningRequestCondition
	for _, c := range csr.Status.Conditions {
		if c.Type != t {
			kept = append(kept, c)
		}
	}
	for _, c := range prev.Status.Conditions {
		if c.Type == t {
			kept = append(kept, c)
		}
	}
	csr.Status.Conditions = kept
}

// validateCSRSpec checks a request as Kubernetes does: a PEM certificate
// request that parses and whose signature holds, a qualified signer name,
// known usages without repeats, and a lifetime of at least ten minutes.
func validateCSRSpec(spec *certificatesv1.CertificateSigningRequestSpec) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	if len(spec.Request) == 0 {
		errs = append(errs, field.Required(p.Child("request"), ""))
	} else if _, err := ParseCSR(spec.Request); err != nil {
		errs = append(errs, field.Invalid(p.Child("request"), "<request>", err.Error()))
	}
	switch {
	case spec.SignerName == "":
		errs = append(errs, field.Required(p.Child("signerName"), ""))
	default:
		domain, path, ok := strings.Cut(spec.SignerName, "/")
		if !ok || domain == "" || path == "" || !strings.Contains(domain, ".") {
			errs = append(errs, field.Invalid(p.Child("signerName"), spec.SignerName, "must be a fully qualified domain and path of the form 'example.com/signer-name'"))
		}
	}
	if len(spec.Usages) == 0 {
		errs = append(errs, field.Required(p.Child("usages"), ""))
	}
	seen := map[certificatesv1.KeyUsage]bool{}
	for i, u := range spec.Usages {
		switch {
		case !validKeyUsages[u]:
			errs = append(errs, field.NotSupported(p.Child("usages").Index(i), u, []string{"client auth", "digital signature", "key encipherment", "server auth", "..."}))
		case seen[u]:
			errs = append(errs, field.Duplicate(p.Child("usages").Index(i), u))
		}
		seen[u] = true
	}
	if e := spec.ExpirationSeconds; e != nil && *e < 600 {
		errs = append(errs, field.Invalid(p.Child("expirationSeconds"), *e, "may not specify a duration less than 600 seconds (10 minutes)"))
	}
	return errs
}

// ParseCSR decodes a PEM "CERTIFICATE REQUEST" block and checks its
// signature.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("PEM block type must be CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the request's signature does not verify: %w", err)
	}
	return req, nil
}

// validateCSRStatus: Approved and Denied exclude each other, each of
// Approved, Denied and Failed appears once with status True, and a
// certificate is PEM certificates, only on an approved, not failed request.
func validateCSRStatus(st *certificatesv1.CertificateSigningRequestStatus) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("status", "conditions")
	count := map[certificatesv1.RequestConditionType]int{}
	for i, c := range st.Conditions {
		if c.Type == "" {
			errs = append(errs, field.Required(p.Index(i).Child("type"), ""))
		}
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			count[c.Type]++
			if count[c.Type] > 1 {
				errs = append(errs, field.Duplicate(p.Index(i).Child("type"), c.Type))
			}
			if c.Type != certificatesv1.CertificateFailed && c.Status != corev1.ConditionTrue {
				errs = append(errs, field.NotSupported(p.Index(i).Child("status"), c.Status, []string{string(corev1.ConditionTrue)}))
			}
		}
	}
	if count[certificatesv1.CertificateApproved] > 0 && count[certificatesv1.CertificateDenied] > 0 {
		errs = append(errs, field.Invalid(p, certificatesv1.CertificateDenied, "Approved and Denied conditions are mutually exclusive"))
	}
	if len(st.Certificate) > 0 {
		cp := field.NewPath("status", "certificate")
		if count[certificatesv1.CertificateApproved] == 0 {
			errs = append(errs, field.Invalid(cp, "<certificate data>", "certificate may only be set on an Approved request"))
		}
		if count[certificatesv1.CertificateFailed] > 0 {
			errs = append(errs, field.Invalid(cp, "<certificate data>", "certificate may not be set on a Failed request"))
		}
		if _, err := ParseCertificates(st.Certificate); err != nil {
			errs = append(errs, field.Invalid(cp, "<certificate data>", err.Error()))
		}
	}
	return errs
}

// ParseCertificates decodes one or more PEM "CERTIFICATE" blocks.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(strings.TrimSpace(string(rest))) > 0 {
				return nil, fmt.Errorf("extra data after the PEM blocks")
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("only CERTIFICATE PEM blocks are allowed, found %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("must contain at least one CERTIFICATE PEM block")
	}
	return out, nil
}

// validateCSRUpdate: the spec never changes, nor does an issued
// certificate, and Approved/Denied conditions are never taken back.
func validateCSRUpdate(csr, old *certificatesv1.CertificateSigningRequest) field.ErrorList {
	var errs field.ErrorList
	if !apiequality.Semantic.DeepEqual(csr.Spec, old.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), "updates to the spec of a CertificateSigningRequest are forbidden"))
	}
	if len(old.Status.Certificate) > 0 && string(csr.Status.Certificate) != string(old.Status.Certificate) {
		errs = append(errs, field.Invalid(field.NewPath("status", "certificate"), "<certificate data>", "updates may not modify existing certificate content"))
	}
	for _, t := range []certificatesv1.RequestConditionType{certificatesv1.CertificateApproved, certificatesv1.CertificateDenied} {
		if hasCSRCondition(old, t) && !hasCSRCondition(csr, t) {
			errs = append(errs, field.Forbidden(field.NewPath("status", "conditions"), fmt.Sprintf("updates may not remove a condition of type %q", t)))
		}
	}
	return errs
}

func hasCSRCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t {
			return true
		}
	}
	return false
}

// Signers Petrel's CA signs for (kubernetes.io/kube-apiserver-client-kubelet:
// nodes; kubernetes.io/kube-apiserver-client: any client the approver or an
// admin approved).
const (
	KubeletClientSigner   = "kubernetes.io/kube-apiserver-client-kubelet"
	APIServerClientSigner = "kubernetes.io/kube-apiserver-client"
	// NodeUserPrefix and NodesGroup name a node's identity.
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// CheckKubeletClientCSR says why a request is not what a node asks for its
// client certificate, as Kubernetes' ValidateKubeletClientCSR: subject
// system:node:<name> in exactly system:nodes, no DNS names, e-mail
// addresses, IP addresses or URIs, and the usages client auth and digital
// signature (plus key encipherment for RSA keys). nil: it is.
func CheckKubeletClientCSR(req *x509.CertificateRequest, usages []certificatesv1.KeyUsage) error {
	if len(req.Subject.Organization) != 1 || req.Subject.Organization[0] != NodesGroup {
		return fmt.Errorf("subject organization is not %s", NodesGroup)
	}
	if len(req.DNSNames) > 0 || len(req.EmailAddresses) > 0 || len(req.IPAddresses) > 0 || len(req.URIs) > 0 {
		return fmt.Errorf("DNS, email, IP and URI subjectAltNames are not allowed")
	}
	if !strings.HasPrefix(req.Subject.CommonName, NodeUserPrefix) || len(req.Subject.CommonName) == len(NodeUserPrefix) {
		return fmt.Errorf("subject common name does not begin with %s", NodeUserPrefix)
	}
	have := map[certificatesv1.KeyUsage]bool{}
	for _, u := range usages {
		have[u] = true
	}
	if !have[certificatesv1.UsageClientAuth] || !have[certificatesv1.UsageDigitalSignature] {
		return fmt.Errorf("usages must include %q and %q", certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature)
	}
	for u := range have {
		switch u {
		case certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return fmt.Errorf("usage %q is not allowed: only %q, %q and %q", u, certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment)
		}
	}
	return nil
}

// CSRApproved and CSRDenied read the decision on a request.
func CSRApproved(csr *certificatesv1.CertificateSigningRequest) bool {
	return csrConditionTrue(csr, certificatesv1.CertificateApproved)
}

// CSRDenied reports a Denied condition.
func CSRDenied(csr *certificatesv1.CertificateSigningRequest) bool {
	return csrConditionTrue(csr, certificatesv1.CertificateDenied)
}

// CSRFailed reports a Failed condition (the signer refused).
func CSRFailed(csr *certificatesv1.CertificateSigningRequest) bool {
	return csrConditionTrue(csr, certificatesv1.CertificateFailed)
}

func csrConditionTrue(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t && (c.Status == corev1.ConditionTrue || c.Status == "") {
			return true
		}
	}
	return false
}
