// Package csrsigning signs approved CertificateSigningRequests with the
// cluster's CA, as Kubernetes' csrsigning controller does for the signers
// kubernetes.io/kube-apiserver-client-kubelet (node client certificates)
// and kubernetes.io/kube-apiserver-client (other clients of the API
// server). A request that does not fit its signer's rules gets a Failed
// condition instead; requests for other signers are left alone.
package csrsigning

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
	"github.com/petrel-project/petrel/controlplane/pki"
	"github.com/petrel-project/petrel/controlplane/registry/certificates"
)

// DefaultMaxDuration is the longest certificate signed (Kubernetes'
// --cluster-signing-duration default): a request's expirationSeconds may
// only shorten it.
const DefaultMaxDuration = 365 * 24 * time.Hour

// Controller signs approved requests.
type Controller struct {
	client      kubernetes.Interface
	csrs        certlisters.CertificateSigningRequestLister
	ca          *pki.CA
	maxDuration time.Duration
	loop        *loop.Loop
}

// New builds the controller; maxDuration 0 is DefaultMaxDuration.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, ca *pki.CA, maxDuration time.Duration) *Controller {
	if maxDuration <= 0 {
		maxDuration = DefaultMaxDuration
	}
	inf := factory.Certificates().V1().CertificateSigningRequests()
	c := &Controller{client: cs, csrs: inf.Lister(), ca: ca, maxDuration: maxDuration}
	c.loop = loop.New("csr signer", loop.Simple(c.sync))
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
	certPEM, failure := c.Sign(csr)
	switch {
	case certPEM != nil:
		csr.Status.Certificate = certPEM
	case failure != "":
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "SignerValidationFailure",
			Message: failure, LastUpdateTime: metav1.Now()})
	default:
		return nil
	}
	_, err = c.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{FieldManager: "csr-signer"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("signing %s: %w", csr.Name, err)
	}
	if certPEM != nil {
		slog.Info("csr signer: signed", "csr", csr.Name, "signer", csr.Spec.SignerName, "requester", csr.Spec.Username)
	} else {
		slog.Warn("csr signer: refused", "csr", csr.Name, "signer", csr.Spec.SignerName, "reason", failure)
	}
	return nil
}

// Sign returns the certificate for an approved request of one of our
// signers, or why the request cannot be signed (to be recorded as Failed),
// or neither when the request is not ours to sign now.
func (c *Controller) Sign(csr *certificatesv1.CertificateSigningRequest) (certPEM []byte, failure string) {
	if len(csr.Status.Certificate) > 0 || !certificates.CSRApproved(csr) || certificates.CSRDenied(csr) || certificates.CSRFailed(csr) {
		return nil, ""
	}
	switch csr.Spec.SignerName {
	case certificates.KubeletClientSigner, certificates.APIServerClientSigner:
	default:
		return nil, ""
	}
	req, err := certificates.ParseCSR(csr.Spec.Request)
	if err != nil {
		return nil, "unable to parse csr: " + err.Error()
	}
	if csr.Spec.SignerName == certificates.KubeletClientSigner {
		if err := certificates.CheckKubeletClientCSR(req, csr.Spec.Usages); err != nil {
			return nil, "invalid kubelet client certificate request: " + err.Error()
		}
	} else if err := checkClientCSR(csr.Spec.Usages); err != nil {
		return nil, "invalid client certificate request: " + err.Error()
	}
	keyUsage, extUsages, err := x509Usages(csr.Spec.Usages)
	if err != nil {
		return nil, err.Error()
	}
	certPEM, err = c.ca.SignRequest(req, keyUsage, extUsages, Lifetime(csr.Spec.ExpirationSeconds, c.maxDuration))
	if err != nil {
		return nil, err.Error()
	}
	return certPEM, ""
}

// Lifetime is the requested lifetime capped at max (Kubernetes' rule;
// the API rejects requests under ten minutes).
func Lifetime(expirationSeconds *int32, max time.Duration) time.Duration {
	if expirationSeconds == nil {
		return max
	}
	d := time.Duration(*expirationSeconds) * time.Second
	if d > max {
		return max
	}
	return d
}

// checkClientCSR: a client certificate of the API server is for client
// auth, with digital signature and key encipherment at most.
func checkClientCSR(usages []certificatesv1.KeyUsage) error {
	client := false
	for _, u := range usages {
		switch u {
		case certificatesv1.UsageClientAuth:
			client = true
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return fmt.Errorf("usage %q is not allowed", u)
		}
	}
	if !client {
		return fmt.Errorf("usages must include %q", certificatesv1.UsageClientAuth)
	}
	return nil
}

// x509Usages maps a request's usages onto the certificate's.
func x509Usages(usages []certificatesv1.KeyUsage) (x509.KeyUsage, []x509.ExtKeyUsage, error) {
	var ku x509.KeyUsage
	var ext []x509.ExtKeyUsage
	for _, u := range usages {
		switch u {
		case certificatesv1.UsageDigitalSignature:
			ku |= x509.KeyUsageDigitalSignature
		case certificatesv1.UsageKeyEncipherment:
			ku |= x509.KeyUsageKeyEncipherment
		case certificatesv1.UsageClientAuth:
			ext = append(ext, x509.ExtKeyUsageClientAuth)
		default:
			return 0, nil, fmt.Errorf("usage %q is not supported by this signer", u)
		}
	}
	return ku, ext, nil
}
