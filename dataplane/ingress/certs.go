package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// certs are the certificates the HTTPS listener serves, by host name (and
// "*.a.b" wildcards), with a self-made certificate for every other name.
type certs struct {
	byHost   map[string]*tls.Certificate
	fallback *tls.Certificate
	// problems say why a named Secret serves nothing (missing, not a TLS
	// Secret, a bad key pair), for the log.
	problems map[secretRef]string
}

// pick chooses the certificate of a TLS handshake by its SNI name: the
// exact host, then a wildcard covering it, then the self-made one.
func (c *certs) pick(serverName string) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if cert := c.byHost[name]; cert != nil {
		return cert
	}
	if suffix := wildcardSuffix(name); suffix != "" {
		if cert := c.byHost["*."+suffix]; cert != nil {
			return cert
		}
	}
	return c.fallback
}

// buildCerts loads the key pairs of the table's TLS hosts from their
// Secrets (get returns nil for a Secret it does not have).
func buildCerts(t *table, get func(secretRef) *corev1.Secret, fallback *tls.Certificate) *certs {
	c := &certs{byHost: map[string]*tls.Certificate{}, fallback: fallback, problems: map[secretRef]string{}}
	loaded := map[secretRef]*tls.Certificate{}
	for _, ref := range t.secrets {
		s := get(ref)
		switch {
		case s == nil:
			c.problems[ref] = "the Secret does not exist (or this node may not read it yet)"
			continue
		case len(s.Data[corev1.TLSCertKey]) == 0 || len(s.Data[corev1.TLSPrivateKeyKey]) == 0:
			c.problems[ref] = fmt.Sprintf("the Secret has no %s and %s", corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
			continue
		}
		pair, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
		if err != nil {
			c.problems[ref] = "not a usable key pair: " + err.Error()
			continue
		}
		loaded[ref] = &pair
	}
	for host, ref := range t.tlsHosts {
		if cert := loaded[ref]; cert != nil {
			c.byHost[strings.ToLower(host)] = cert
		}
	}
	return c
}

// selfSigned makes the certificate served to names no Secret covers (as
// ingress-nginx's "Kubernetes Ingress Controller Fake Certificate").
func selfSigned(node string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ingress: default certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Petrel Ingress default certificate", Organization: []string{"petrel node " + node}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"ingress.petrel.invalid"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ingress: default certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
