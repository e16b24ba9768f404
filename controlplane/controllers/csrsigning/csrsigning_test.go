package csrsigning

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/petrel-project/petrel/controlplane/pki"
	"github.com/petrel-project/petrel/controlplane/registry/certificates"
)

func request(t *testing.T, cn string, orgs ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: orgs}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestSign(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &Controller{ca: ca, maxDuration: DefaultMaxDuration}
	approved := []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	secs := func(n int32) *int32 { return &n }
	for _, row := range []struct {
		name       string
		signer     string
		req        []byte
		usages     []certificatesv1.KeyUsage
		conditions []certificatesv1.CertificateSigningRequestCondition
		expiration *int32
		wantCN     string
		wantLife   time.Duration
		wantFail   string
	}{
		{name: "node client", signer: certificates.KubeletClientSigner, req: request(t, "system:node:n1", "system:nodes"), usages: usages,
			conditions: approved, wantCN: "system:node:n1", wantLife: DefaultMaxDuration},
		{name: "short lifetime honoured", signer: certificates.KubeletClientSigner, req: request(t, "system:node:n1", "system:nodes"), usages: usages,
			conditions: approved, expiration: secs(600), wantCN: "system:node:n1", wantLife: 10 * time.Minute},
		{name: "lifetime capped", signer: certificates.APIServerClientSigner, req: request(t, "jane", "devs"), usages: usages,
			conditions: approved, expiration: secs(1 << 30), wantCN: "jane", wantLife: DefaultMaxDuration},
		{name: "pending", signer: certificates.KubeletClientSigner, req: request(t, "system:node:n1", "system:nodes"), usages: usages},
		{name: "not ours", signer: "example.com/other", req: request(t, "x"), usages: usages, conditions: approved},
		{name: "kubelet signer, wrong subject", signer: certificates.KubeletClientSigner, req: request(t, "system:node:n1", "system:masters"), usages: usages,
			conditions: approved, wantFail: "organization"},
		{name: "client signer, server auth", signer: certificates.APIServerClientSigner, req: request(t, "jane"),
			usages: []certificatesv1.KeyUsage{certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth}, conditions: approved, wantFail: "server auth"},
	} {
		t.Run(row.name, func(t *testing.T) {
			csr := &certificatesv1.CertificateSigningRequest{
				Spec:   certificatesv1.CertificateSigningRequestSpec{Request: row.req, SignerName: row.signer, Usages: row.usages, ExpirationSeconds: row.expiration},
				Status: certificatesv1.CertificateSigningRequestStatus{Conditions: row.conditions},
			}
			certPEM, fail := c.Sign(csr)
			if row.wantFail != "" {
				if certPEM != nil || !strings.Contains(fail, row.wantFail) {
					t.Fatalf("Sign = %d bytes, %q; want failure with %q", len(certPEM), fail, row.wantFail)
				}
				return
			}
			if fail != "" {
				t.Fatalf("failed: %s", fail)
			}
			if row.wantCN == "" {
				if certPEM != nil {
					t.Fatal("signed a request it should leave alone")
				}
				return
			}
			certs, err := certificates.ParseCertificates(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			cert := certs[0]
			if cert.Subject.CommonName != row.wantCN {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, row.wantCN)
			}
			if life := cert.NotAfter.Sub(cert.NotBefore) - 5*time.Minute; life < row.wantLife-time.Minute || life > row.wantLife+time.Minute {
				t.Errorf("lifetime %v, want %v", life, row.wantLife)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca.Cert)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("certificate does not verify as a client of the CA: %v", err)
			}
		})
	}
}
