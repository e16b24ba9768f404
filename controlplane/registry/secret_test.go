package registry

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestImmutableSecret(t *testing.T) {
	validate := secretResource().ValidateUpdate
	old := &corev1.Secret{Immutable: ptr.To(true), Data: map[string][]byte{"a": []byte("1")}}
	for name, tc := range map[string]struct {
		new  *corev1.Secret
		want string
	}{
		"unchanged":        {&corev1.Secret{Immutable: ptr.To(true), Data: map[string][]byte{"a": []byte("1")}}, ""},
		"a key added":      {&corev1.Secret{Immutable: ptr.To(true), Data: map[string][]byte{"a": []byte("1"), "b": []byte("2")}}, "data: Forbidden"},
		"made mutable":     {&corev1.Secret{Immutable: ptr.To(false), Data: map[string][]byte{"a": []byte("1")}}, "immutable: Forbidden"},
		"immutable unset":  {&corev1.Secret{Data: map[string][]byte{"a": []byte("1")}}, "immutable: Forbidden"},
		"type changed too": {&corev1.Secret{Immutable: ptr.To(true), Type: corev1.SecretTypeTLS, Data: map[string][]byte{"a": []byte("1")}}, "type: Invalid"},
	} {
		errs := validate(tc.new, old).ToAggregate()
		switch {
		case tc.want == "" && errs != nil:
			t.Errorf("%s: %v", name, errs)
		case tc.want != "" && (errs == nil || !strings.Contains(errs.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", name, errs, tc.want)
		}
	}
	// A mutable secret may be made immutable, and changed on the way.
	if errs := validate(&corev1.Secret{Immutable: ptr.To(true), Data: map[string][]byte{"b": nil}}, &corev1.Secret{Data: map[string][]byte{"a": nil}}); len(errs) != 0 {
		t.Errorf("made immutable: %v", errs)
	}
}
