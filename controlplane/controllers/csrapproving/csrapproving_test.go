package csrapproving

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/petrel-project/petrel/controlplane/registry/certificates"
)

func request(t *testing.T, cn string, orgs []string, dns ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestDecide(t *testing.T) {
	nodeUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	csr := func(user string, req []byte, mut ...func(*certificatesv1.CertificateSigningRequest)) *certificatesv1.CertificateSigningRequest {
		c := &certificatesv1.CertificateSigningRequest{Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: req, SignerName: certificates.KubeletClientSigner, Usages: nodeUsages, Username: user}}
		for _, m := range mut {
			m(c)
		}
		return c
	}
	good := request(t, "system:node:n1", []string{"system:nodes"})
	for _, row := range []struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest
		// grants are the subresources the requester may create.
		grants []string
		want   string // message substring, "" for no approval
		asked  []string
	}{
		{name: "bootstrap token, nodeclient granted", csr: csr("system:bootstrap:abcdef", good), grants: []string{NodeClient},
			want: "Auto approving kubelet client certificate", asked: []string{NodeClient}},
		{name: "bootstrap token without nodeclient", csr: csr("system:bootstrap:abcdef", good), asked: []string{NodeClient}},
		{name: "node renewing itself", csr: csr("system:node:n1", good), grants: []string{SelfNodeClient},
			want: "Auto approving self kubelet client certificate", asked: []string{SelfNodeClient}},
		{name: "node asking for another node", csr: csr("system:node:n2", good), grants: []string{SelfNodeClient}, asked: []string{NodeClient}},
		{name: "wrong organization", csr: csr("system:bootstrap:abcdef", request(t, "system:node:n1", []string{"system:masters"})), grants: []string{NodeClient}},
		{name: "not a node name", csr: csr("system:bootstrap:abcdef", request(t, "admin", []string{"system:nodes"})), grants: []string{NodeClient}},
		{name: "DNS names", csr: csr("system:bootstrap:abcdef", request(t, "system:node:n1", []string{"system:nodes"}, "evil.example")), grants: []string{NodeClient}},
		{name: "server auth usage", csr: csr("system:bootstrap:abcdef", good, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageServerAuth)
		}), grants: []string{NodeClient}},
		{name: "other signer", csr: csr("system:bootstrap:abcdef", good, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.SignerName = certificates.APIServerClientSigner
		}), grants: []string{NodeClient}},
		{name: "denied already", csr: csr("system:bootstrap:abcdef", good, func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
		}), grants: []string{NodeClient}},
	} {
		t.Run(row.name, func(t *testing.T) {
			var asked []string
			c := &Controller{allowed: func(_ context.Context, _ *certificatesv1.CertificateSigningRequest, sub string) (bool, error) {
				asked = append(asked, sub)
				for _, g := range row.grants {
					if g == sub {
						return true, nil
					}
				}
				return false, nil
			}}
			got, err := c.Decide(context.Background(), row.csr)
			if err != nil {
				t.Fatal(err)
			}
			if (row.want == "") != (got == "") || !strings.Contains(got, row.want) {
				t.Errorf("Decide = %q, want %q", got, row.want)
			}
			if strings.Join(asked, ",") != strings.Join(row.asked, ",") {
				t.Errorf("asked about %v, want %v", asked, row.asked)
			}
		})
	}
}
