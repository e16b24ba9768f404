// Package admission is the chain every write passes through after the kind's
// own defaults and before its validation is final: mutating plugins first,
// then validating ones, as Kubernetes' admission. A plugin sees the request's
// attributes (operation, resource, object, old object, user) and nothing of
// HTTP; the registry's generic store runs the chain, the apiserver only puts
// the user into the context.
package admission

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Operation is what a request does to an object.
type Operation string

// The operations admission sees.
const (
	Create  Operation = "CREATE"
	Update  Operation = "UPDATE"
	Delete  Operation = "DELETE"
	Connect Operation = "CONNECT"
)

// User is who makes a request, as authentication found it.
type User struct {
	Name   string
	UID    string
	Groups []string
}

type userKey struct{}

// WithUser records the request's user in ctx.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom is the user WithUser recorded, if any.
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

// Attributes describe one write for the plugins.
type Attributes struct {
	Operation   Operation
	Resource    schema.GroupVersionResource
	Subresource string
	Kind        schema.GroupVersionKind
	Namespace   string
	Name        string
	// Object is the object being written (nil for a delete); mutating
	// plugins change it in place.
	Object runtime.Object
	// OldObject is the stored object of an update or delete.
	OldObject runtime.Object
	DryRun    bool
	// User is the requester; HasUser is false for writes the server makes
	// itself without one.
	User    User
	HasUser bool
	// Reinvoke is set by a mutating plugin that asks for the mutating
	// plugins to run once more (a webhook with reinvocationPolicy IfNeeded
	// whose object a later plugin changed); Reinvoking is true during that
	// second pass.
	Reinvoke, Reinvoking bool
	// Changed is set by a mutating plugin whose change the kind's
	// validation has not seen (a webhook's patch), so that an update,
	// validated before admission, is validated again.
	Changed bool
	// Ext holds what plugins keep for the length of one admission (both
	// passes and the validation after them), keyed by the plugin's name.
	Ext map[string]any
}

// Interface is an admission plugin.
type Interface interface {
	// Name names the plugin in errors and logs.
	Name() string
	// Handles says whether the plugin looks at the operation at all.
	Handles(op Operation) bool
}

// MutationInterface is a plugin that may change the object.
type MutationInterface interface {
	Interface
	Admit(ctx context.Context, a *Attributes) error
}

// ValidationInterface is a plugin that may only refuse.
type ValidationInterface interface {
	Interface
	Validate(ctx context.Context, a *Attributes) error
}

// Chain is an ordered list of plugins. Admit runs the mutating members in
// order, Validate the validating ones; a plugin can be both.
type Chain []Interface

// Admit runs every mutating plugin that handles the operation and stops at
// the first refusal. When a plugin asks for it (Attributes.Reinvoke), the
// mutating plugins run a second time, as Kubernetes reinvokes its chain; the
// built-in plugins are idempotent.
func (c Chain) Admit(ctx context.Context, a *Attributes) error {
	if err := c.admitOnce(ctx, a); err != nil {
		return err
	}
	if a.Reinvoke && !a.Reinvoking {
		a.Reinvoking = true
		return c.admitOnce(ctx, a)
	}
	return nil
}

func (c Chain) admitOnce(ctx context.Context, a *Attributes) error {
	for _, p := range c {
		m, ok := p.(MutationInterface)
		if !ok || !p.Handles(a.Operation) {
			continue
		}
		if err := m.Admit(ctx, a); err != nil {
			return wrap(p, err)
		}
	}
	return nil
}

// Validate runs every validating plugin that handles the operation and
// stops at the first refusal.
func (c Chain) Validate(ctx context.Context, a *Attributes) error {
	for _, p := range c {
		v, ok := p.(ValidationInterface)
		if !ok || !p.Handles(a.Operation) {
			continue
		}
		if err := v.Validate(ctx, a); err != nil {
			return wrap(p, err)
		}
	}
	return nil
}

// Names lists the plugins in order.
func (c Chain) Names() []string {
	out := make([]string, 0, len(c))
	for _, p := range c {
		out = append(out, p.Name())
	}
	return out
}

// wrap keeps API errors as they are, so their code and details reach the
// client, and names the plugin in any other.
func wrap(p Interface, err error) error {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return err
	}
	return fmt.Errorf("admission plugin %s: %w", p.Name(), err)
}

type warningsKey struct{}

// WithWarnings records in ctx where plugins' warnings go: the apiserver
// sends each as a Warning header of the response.
func WithWarnings(ctx context.Context, add func(text string)) context.Context {
	return context.WithValue(ctx, warningsKey{}, add)
}

// Warn passes text to the warnings sink of ctx, if there is one. It may be
// called from several goroutines at once.
func Warn(ctx context.Context, text string) {
	if add, ok := ctx.Value(warningsKey{}).(func(string)); ok {
		add(text)
	}
}

// Handles is a helper for plugins: a set of operations.
type Handles map[Operation]bool

// NewHandles is the set of ops.
func NewHandles(ops ...Operation) Handles {
	h := Handles{}
	for _, op := range ops {
		h[op] = true
	}
	return h
}

// Handles reports whether op is in the set.
func (h Handles) Handles(op Operation) bool { return h[op] }
