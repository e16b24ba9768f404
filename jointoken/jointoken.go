// Package jointoken formats and parses the tokens nodes join a cluster
// with, as k3s writes them: "K10<ca-hash>::<id>.<secret>", where
// <id>.<secret> is a Kubernetes bootstrap token (the Secret
// kube-system/bootstrap-token-<id>) and <ca-hash> pins the cluster's CA
// certificate. A bare "<id>.<secret>" is accepted too; the CA is then
// trusted through the cluster-info ConfigMap's JWS signature made with
// the token, as kubeadm does without --discovery-token-ca-cert-hash.
//
// The CA hash is the lower-case hex SHA-256 of the CA certificate's DER
// bytes, what `openssl x509 -in ca.crt -outform der | sha256sum` prints.
// (k3s hashes its CA bundle's PEM text, kubeadm the certificate's public
// key; the DER form does not depend on how the PEM is wrapped or bundled.)
package jointoken

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// Prefix opens a token that carries a CA hash.
const Prefix = "K10"

// Token is a parsed join token.
type Token struct {
	// CAHash is the hex SHA-256 of the CA certificate (DER); empty when the
	// token carries none.
	CAHash string
	// ID and Secret are the two halves of the bootstrap token.
	ID, Secret string
}

// Bootstrap is the bootstrap token "<id>.<secret>", the bearer token the
// node authenticates with.
func (t Token) Bootstrap() string { return t.ID + "." + t.Secret }

// String is the token as `petrel token create` prints it.
func (t Token) String() string {
	if t.CAHash == "" {
		return t.Bootstrap()
	}
	return Prefix + t.CAHash + "::" + t.Bootstrap()
}

// Parse reads "K10<hash>::<id>.<secret>" or "<id>.<secret>".
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	var t Token
	rest := s
	if strings.HasPrefix(s, Prefix) {
		hash, after, ok := strings.Cut(strings.TrimPrefix(s, Prefix), "::")
		if !ok {
			return Token{}, errors.New("a token that starts with K10 must read K10<ca-hash>::<id>.<secret>")
		}
		if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
			return Token{}, fmt.Errorf("the CA hash %q in the token is not 64 hex digits (SHA-256)", hash)
		}
		t.CAHash, rest = strings.ToLower(hash), after
	}
	if !bootstraputil.IsValidBootstrapToken(rest) {
		return Token{}, errors.New("the token must end in a bootstrap token <id>.<secret>: 6 and 16 characters of [a-z0-9]")
	}
	t.ID, t.Secret, _ = strings.Cut(rest, ".")
	return t, nil
}

// Generate makes a new bootstrap token pinned to caHash (may be empty).
func Generate(caHash string) (Token, error) {
	s, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, err
	}
	id, secret, _ := strings.Cut(s, ".")
	return Token{CAHash: caHash, ID: id, Secret: secret}, nil
}

// CAHash is the hash a token pins a CA certificate with.
func CAHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// CAHashPEM hashes the first certificate of a PEM bundle.
func CAHashPEM(caPEM []byte) (string, error) {
	block, _ := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate in the CA data")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("parse the CA certificate: %w", err)
	}
	return CAHash(cert), nil
}
