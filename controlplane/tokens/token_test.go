package tokens

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	jose "gopkg.in/go-jose/go-jose.v2"
)

func TestIssueAndVerify(t *testing.T) {
	dir := t.TempDir()
	iss, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	iss.now = func() time.Time { return now }
	tok, exp, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: Ref{Name: "default", UID: "sa-uid"},
		Pod: &Ref{Name: "p", UID: "pod-uid"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Hour)) {
		t.Errorf("expiry %v", exp)
	}
	// The key is kept: a second start checks the first's tokens.
	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	again.now = iss.now
	c, err := again.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "system:serviceaccount:ns:default" || c.Kubernetes.ServiceAccount.UID != "sa-uid" || c.Kubernetes.Pod == nil || c.Kubernetes.Pod.UID != "pod-uid" {
		t.Errorf("claims %+v", c)
	}

	now = now.Add(2 * time.Hour)
	if _, err := again.Verify(tok); err == nil || errors.Is(err, ErrNotOurs) {
		t.Errorf("an expired token: %v", err)
	}
	now = now.Add(-2 * time.Hour)

	other, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other.now = iss.now
	if _, err := other.Verify(tok); !errors.Is(err, ErrNotOurs) {
		t.Errorf("another cluster's token: %v", err)
	}
	if _, err := iss.Verify("not-a-jwt"); !errors.Is(err, ErrNotOurs) {
		t.Errorf("garbage: %v", err)
	}
	// A token for another audience does not open the API server.
	vault, _, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: Ref{Name: "default"}, Audiences: []string{"vault"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Verify(vault); err == nil || !strings.Contains(err.Error(), "not meant") {
		t.Errorf("another audience: %v", err)
	}
}

// TestSubjectMustMatchPrivateClaims: a token whose sub is not
// system:serviceaccount:<ns>:<name> of its kubernetes.io claims is refused,
// as Kubernetes' validator refuses it, even when our key signed it: the user
// name comes from sub, the service account looked up from the private
// claims, so a mismatch would authenticate one account as another's user.
func TestSubjectMustMatchPrivateClaims(t *testing.T) {
	iss, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	iss.now = func() time.Time { return now }
	sign := func(sub string) string {
		c := Claims{
			RegisteredClaims: jwt.RegisteredClaims{Issuer: DefaultIssuer, Subject: sub, Audience: jwt.ClaimStrings{DefaultIssuer},
				ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now)},
			Kubernetes: Private{Namespace: "ns", ServiceAccount: Ref{Name: "default", UID: "sa-uid"}},
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, c).SignedString(iss.key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, row := range []struct {
		sub  string
		good bool
	}{
		{"system:serviceaccount:ns:default", true},
		{"system:serviceaccount:kube-system:default", false},
		{"system:serviceaccount:ns:admin", false},
		{"system:admin", false},
		{"admin", false},
		{"", false},
		{"system:serviceaccount:ns:default:extra", false},
	} {
		tok := sign(row.sub)
		_, err := iss.Verify(tok)
		_, _, errFor := iss.VerifyFor(tok, nil)
		for path, err := range map[string]error{"Verify": err, "VerifyFor": errFor} {
			switch {
			case row.good && err != nil:
				t.Errorf("%s: sub %q refused: %v", path, row.sub, err)
			case !row.good && err == nil:
				t.Errorf("%s: sub %q for ns/default accepted", path, row.sub)
			case !row.good && errors.Is(err, ErrNotOurs):
				t.Errorf("%s: sub %q: %v; want ours but not good", path, row.sub, err)
			}
		}
	}
}

// TestJWKSVerifiesTokens checks what an OIDC relying party does: it picks
// the key the token's kid names from the JWKS and verifies the signature.
func TestJWKSVerifiesTokens(t *testing.T) {
	iss, err := LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := iss.Issue(Request{Namespace: "ns", ServiceAccount: Ref{Name: "a", UID: "u"}, Audiences: []string{"relying-party"}, TTL: time.Hour,
		Pod: &Ref{Name: "p", UID: "pu"}, Node: &Ref{Name: "n", UID: "nu"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := iss.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("JWKS %s: %v", raw, err)
	}
	var c Claims
	parsed, err := jwt.ParseWithClaims(tok, &c, func(t *jwt.Token) (interface{}, error) {
		keys := set.Key(t.Header["kid"].(string))
		if len(keys) != 1 || keys[0].Algorithm != "ES256" || keys[0].Use != "sig" {
			return nil, fmt.Errorf("JWKS has %d keys for kid %v", len(keys), t.Header["kid"])
		}
		return keys[0].Key, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(iss.Name()), jwt.WithAudience("relying-party"))
	if err != nil || !parsed.Valid {
		t.Fatalf("verifying with the JWKS: %v", err)
	}
	if c.Kubernetes.Node == nil || c.Kubernetes.Node.UID != "nu" || c.ID == "" {
		t.Fatalf("claims %+v", c.Kubernetes)
	}
	// Another issuer's key does not verify it.
	other, _ := LoadOrCreate(t.TempDir())
	raw2, _ := other.JWKS()
	var set2 jose.JSONWebKeySet
	_ = json.Unmarshal(raw2, &set2)
	if _, err := jwt.Parse(tok, func(*jwt.Token) (interface{}, error) { return set2.Keys[0].Key, nil }); err == nil {
		t.Fatal("another key verified the token")
	}
}
