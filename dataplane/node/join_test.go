package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/certificate"
)

// fakeSigner answers CSR creates of a fake clientset at once, approved and
// signed by its own CA for lifetime (whatever the request asks), as the
// server's approver and signer do.
type fakeSigner struct {
	mu       sync.Mutex
	ca       *x509.Certificate
	key      *ecdsa.PrivateKey
	lifetime time.Duration
	n        int
}

func newFakeSigner(t *testing.T, lifetime time.Duration) *fakeSigner {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &fakeSigner{ca: ca, key: key, lifetime: lifetime}
}

func (f *fakeSigner) clientset() *fake.Clientset {
	cs := fake.NewSimpleClientset()
	gvr := certificatesv1.SchemeGroupVersion.WithResource("certificatesigningrequests")
	cs.PrependReactor("create", "certificatesigningrequests", func(action k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		csr := action.(k8stesting.CreateAction).GetObject().(*certificatesv1.CertificateSigningRequest).DeepCopy()
		f.n++
		csr.Name, csr.UID = fmt.Sprintf("csr-%d", f.n), types.UID(fmt.Sprintf("uid-%d", f.n))
		block, _ := pem.Decode(csr.Spec.Request)
		req, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			return true, nil, err
		}
		now := time.Now()
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(int64(f.n + 1)), Subject: req.Subject,
			NotBefore: now, NotAfter: now.Add(f.lifetime), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			KeyUsage: x509.KeyUsageDigitalSignature}, f.ca, req.PublicKey, f.key)
		if err != nil {
			return true, nil, err
		}
		csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
		csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		// One request at a time: the fake's lists ignore field selectors.
		old, _ := cs.Tracker().List(gvr, certificatesv1.SchemeGroupVersion.WithKind("CertificateSigningRequest"), "")
		for _, o := range old.(*certificatesv1.CertificateSigningRequestList).Items {
			_ = cs.Tracker().Delete(gvr, "", o.Name)
		}
		return true, csr, cs.Tracker().Create(gvr, csr, "")
	})
	return cs
}

// TestRotationRenewsBeforeExpiry: a node's certificate is renewed through a
// new request before it expires (at 70-90% of its life), and the store's
// current pair changes to the new one.
func TestRotationRenewsBeforeExpiry(t *testing.T) {
	signer := newFakeSigner(t, 4*time.Second)
	cs := signer.clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	certPEM, keyPEM, err := requestNodeCertificate(ctx, cs, "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	store, err := certificate.NewFileStore(nodeClientPrefix, dir, dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	first, err := store.Update(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cn := first.Leaf.Subject.CommonName; cn != "system:node:n1" {
		t.Fatalf("first certificate for %q", cn)
	}
	var usedCurrent atomic.Bool
	m, err := newRotation(ctx, "n1", 0, store, func(current *tls.Certificate) (kubernetes.Interface, error) {
		usedCurrent.Store(current != nil)
		return cs, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	for {
		cur, err := store.Current()
		if err == nil && cur.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
			if !cur.Leaf.NotAfter.After(first.Leaf.NotAfter) || cur.Leaf.Subject.CommonName != "system:node:n1" {
				t.Fatalf("renewed certificate: %s until %v (first until %v)", cur.Leaf.Subject.CommonName, cur.Leaf.NotAfter, first.Leaf.NotAfter)
			}
			if time.Now().After(first.Leaf.NotAfter) {
				t.Errorf("renewed only after the first certificate expired")
			}
			if !usedCurrent.Load() {
				t.Errorf("the renewal did not use the node's current certificate")
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the certificate was not renewed")
		case <-time.After(100 * time.Millisecond):
		}
	}
}
