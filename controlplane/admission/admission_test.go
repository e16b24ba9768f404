package admission

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

type recorder struct {
	name    string
	ops     Handles
	log     *[]string
	fail    error
	mutates bool
}

func (r *recorder) Name() string              { return r.name }
func (r *recorder) Handles(op Operation) bool { return r.ops.Handles(op) }
func (r *recorder) Validate(_ context.Context, _ *Attributes) error {
	*r.log = append(*r.log, "validate "+r.name)
	return r.fail
}

type mutator struct{ recorder }

func (m *mutator) Admit(_ context.Context, _ *Attributes) error {
	*m.log = append(*m.log, "admit "+m.name)
	return m.fail
}

// TestChainOrder: Admit runs only mutating members and Validate only
// validating ones, each in chain order and only for the operations they
// handle; the first refusal stops the chain; API errors come back as they
// are and other errors name the plugin.
func TestChainOrder(t *testing.T) {
	var log []string
	both := NewHandles(Create, Update)
	c := Chain{
		&mutator{recorder{name: "m1", ops: both, log: &log}},
		&recorder{name: "v1", ops: both, log: &log},
		&mutator{recorder{name: "m2", ops: NewHandles(Update), log: &log}},
		&recorder{name: "v2", ops: both, log: &log},
	}
	a := &Attributes{Operation: Create}
	if err := c.Admit(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(log, ","), "admit m1,validate m1,validate v1,validate v2"; got != want {
		t.Fatalf("ran %s, want %s", got, want)
	}
	log = nil
	c[1].(*recorder).fail = apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("no"))
	err := c.Validate(context.Background(), a)
	if !apierrors.IsForbidden(err) || strings.Join(log, ",") != "validate m1,validate v1" {
		t.Fatalf("refusal: %v after %v", err, log)
	}
	c[1].(*recorder).fail = errors.New("boom")
	if err := c.Validate(context.Background(), a); err == nil || !strings.Contains(err.Error(), "admission plugin v1: boom") {
		t.Fatalf("plain error: %v", err)
	}
	if got := strings.Join(c.Names(), ","); got != "m1,v1,m2,v2" {
		t.Fatalf("names %s", got)
	}
}
