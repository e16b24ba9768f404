package tokens

import (
	"errors"
	"strings"
	"testing"
	"time"
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
