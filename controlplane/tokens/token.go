// Package tokens issues and checks service account tokens: JWTs
// signed (ES256) with a key the API server makes at first start, carrying
// the claims Kubernetes' tokens carry (issuer, subject
// system:serviceaccount:<ns>:<name>, audiences, expiry, and under
// "kubernetes.io" the namespace, service account and bound pod), so that
// clients in pods (client-go's in-cluster config, kubectl) reach the API
// server with the token the kubelet projects into them.
package tokens

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	jose "gopkg.in/go-jose/go-jose.v2"
	"k8s.io/apimachinery/pkg/util/cache"
)

// DefaultIssuer is the issuer and default audience of tokens, as
// Kubernetes' --service-account-issuer is usually set.
const DefaultIssuer = "https://kubernetes.default.svc.cluster.local"

// Ref names an object a token is bound to or issued for.
type Ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// Private are the "kubernetes.io" claims.
type Private struct {
	Namespace      string `json:"namespace"`
	ServiceAccount Ref    `json:"serviceaccount"`
	Pod            *Ref   `json:"pod,omitempty"`
	// Node is the node of the bound pod, as Kubernetes 1.32 records it in
	// pod-bound tokens (informational: the pod is what the token is bound to).
	Node *Ref `json:"node,omitempty"`
}

// Claims are a token's claims.
type Claims struct {
	jwt.RegisteredClaims
	Kubernetes Private `json:"kubernetes.io"`
}

// Subject is the user name of a service account.
func Subject(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// Issuer signs and checks tokens.
type Issuer struct {
	key    *ecdsa.PrivateKey
	issuer string
	now    func() time.Time
	// verified keeps the claims of tokens whose signature was checked a
	// moment ago: a pod's client sends the same token with every request,
	// and an ECDSA verification costs more than the rest of a GET.
	verified *cache.LRUExpireCache
}

// verifiedTTL bounds how long a checked signature is taken as read.
const verifiedTTL = 10 * time.Second

// LoadOrCreate reads <dir>/sa.key, making it the first time.
func LoadOrCreate(dir string) (*Issuer, error) {
	path := filepath.Join(dir, "sa.key")
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s is not PEM", path)
		}
		key, err := x509.ParseECPrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return New(key), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return New(key), nil
}

// New issues with key.
func New(key *ecdsa.PrivateKey) *Issuer {
	return &Issuer{key: key, issuer: DefaultIssuer, now: time.Now, verified: cache.NewLRUExpireCache(4096)}
}

// Name is the issuer's URL, the tokens' "iss".
func (i *Issuer) Name() string { return i.issuer }

// KeyID names the signing key in tokens' headers and the JWKS: the
// unpadded base64url SHA-256 of its public key in PKIX DER, the way
// Kubernetes derives its key IDs.
func (i *Issuer) KeyID() string {
	der, err := x509.MarshalPKIXPublicKey(&i.key.PublicKey)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWKS is the JSON Web Key Set of the public keys tokens are signed with,
// as /openid/v1/jwks serves it.
func (i *Issuer) JWKS() ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &i.key.PublicKey, KeyID: i.KeyID(), Algorithm: "ES256", Use: "sig"}}}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("encoding the JWKS: %w", err)
	}
	return b, nil
}

// Request is what a token is issued for.
type Request struct {
	Namespace      string
	ServiceAccount Ref
	// Pod, when set, binds the token: it is good only while that pod
	// (this UID) exists.
	Pod *Ref
	// Node is the bound pod's node, when it has one.
	Node      *Ref
	Audiences []string
	TTL       time.Duration
}

// Issue signs a token for r; it returns the token and its expiry.
func (i *Issuer) Issue(r Request) (string, time.Time, error) {
	now := i.now().Truncate(time.Second)
	exp := now.Add(r.TTL)
	aud := r.Audiences
	if len(aud) == 0 {
		aud = []string{i.issuer}
	}
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: i.issuer, Subject: Subject(r.Namespace, r.ServiceAccount.Name), Audience: aud,
			ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ID: uuid.NewString(),
		},
		Kubernetes: Private{Namespace: r.Namespace, ServiceAccount: r.ServiceAccount, Pod: r.Pod},
	}
	if r.Pod != nil {
		c.Kubernetes.Node = r.Node
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	// The key ID lets a verifier that reads the JWKS pick the key.
	t.Header["kid"] = i.KeyID()
	tok, err := t.SignedString(i.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign a service account token: %w", err)
	}
	return tok, exp, nil
}

// ErrNotOurs says a bearer token is not one of this issuer's (another
// kind of token, or another key); other errors say it is ours but not
// good (expired, wrong audience).
var ErrNotOurs = errors.New("not a service account token of this cluster")

// Verify checks a token's signature, issuer, time window and that it is
// meant for the API server; the caller checks that the service account
// and bound pod still exist with the UIDs it names.
func (i *Issuer) Verify(token string) (*Claims, error) {
	if v, ok := i.verified.Get(token); ok {
		c := v.(*Claims)
		if c.ExpiresAt != nil && i.now().Before(c.ExpiresAt.Time) {
			return c, nil
		}
		i.verified.Remove(token)
	}
	c, err := i.parse(token)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(c.Audience, i.issuer) {
		return nil, fmt.Errorf("the token is not meant for the API server (audiences %v)", c.Audience)
	}
	i.verified.Add(token, c, min(verifiedTTL, c.ExpiresAt.Sub(i.now())))
	return c, nil
}

// VerifyFor checks a token as Verify does, but for any of audiences (the
// API server's when empty), and returns the audiences it is meant for: a
// TokenReview from a service that accepts tokens made for itself.
func (i *Issuer) VerifyFor(token string, audiences []string) (*Claims, []string, error) {
	if len(audiences) == 0 {
		audiences = []string{i.issuer}
	}
	c, err := i.parse(token)
	if err != nil {
		return nil, nil, err
	}
	var meant []string
	for _, a := range audiences {
		if slices.Contains(c.Audience, a) {
			meant = append(meant, a)
		}
	}
	if len(meant) == 0 {
		return nil, nil, fmt.Errorf("the token is not meant for %v (audiences %v)", audiences, c.Audience)
	}
	return c, meant, nil
}

// parse checks a token's signature, issuer and time window, and that its
// subject is the service account its kubernetes.io claims name.
func (i *Issuer) parse(token string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (interface{}, error) { return &i.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(i.issuer), jwt.WithTimeFunc(i.now), jwt.WithExpirationRequired())
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return nil, ErrNotOurs
	case err != nil:
		return nil, err
	}
	if c.Kubernetes.Namespace == "" || c.Kubernetes.ServiceAccount.Name == "" {
		return nil, errors.New("the token names no service account")
	}
	// The user is the subject while the service account checked is the one
	// in the private claims: they must be the same account, as Kubernetes'
	// validator requires, or a token could pass as another account's user.
	if want := Subject(c.Kubernetes.Namespace, c.Kubernetes.ServiceAccount.Name); c.Subject != want {
		return nil, fmt.Errorf("the token's sub claim %q is not its service account %s", c.Subject, want)
	}
	return &c, nil
}
