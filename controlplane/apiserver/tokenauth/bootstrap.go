package tokenauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstrapsecrets "k8s.io/cluster-bootstrap/util/secrets"

	"github.com/petrel-project/petrel/controlplane/admission"
)

// BootstrapUser authenticates a bootstrap token as Kubernetes'
// bootstrap token authenticator does: the Secret bootstrap-token-<id> in
// kube-system, of type bootstrap.kubernetes.io/token, holds the same
// secret, allows authentication and has not expired. The user is
// system:bootstrap:<id> in system:bootstrappers and the Secret's
// auth-extra-groups. Unlike Kubernetes, the error says which check failed
// (the token ID is not secret; the secret half is never echoed), so that a
// node that cannot join says why.
func (a *Authenticator) BootstrapUser(ctx context.Context, token string) (admission.User, error) {
	id, secret := token[:bootstrapapi.BootstrapTokenIDBytes], token[bootstrapapi.BootstrapTokenIDBytes+1:]
	st := a.store("secrets")
	if st == nil {
		return admission.User{}, errors.New("this API server serves no Secrets, so no bootstrap tokens")
	}
	name := bootstraputil.BootstrapTokenSecretName(id)
	obj, err := st.Lookup(ctx, "kube-system", name)
	if apierrors.IsNotFound(err) {
		return admission.User{}, fmt.Errorf("bootstrap token %q is unknown: no Secret kube-system/%s (a wrong token, or one that expired and was removed)", id, name)
	}
	if err != nil {
		return admission.User{}, fmt.Errorf("bootstrap token %q: %w", id, err)
	}
	sec := obj.(*corev1.Secret)
	if sec.Type != bootstrapapi.SecretTypeBootstrapToken || sec.DeletionTimestamp != nil {
		return admission.User{}, fmt.Errorf("bootstrap token %q is unknown: Secret kube-system/%s is not of type %s or is being deleted", id, name, bootstrapapi.SecretTypeBootstrapToken)
	}
	if bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenIDKey) != id {
		return admission.User{}, fmt.Errorf("bootstrap token %q: its Secret names another token ID", id)
	}
	want := bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenSecretKey)
	if subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		return admission.User{}, fmt.Errorf("bootstrap token %q: the secret part of the token is wrong", id)
	}
	if bootstrapsecrets.HasExpired(sec, time.Now()) {
		return admission.User{}, fmt.Errorf("bootstrap token %q expired at %s; make a new one with `petrel token create`", id,
			bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenExpirationKey))
	}
	if bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenUsageAuthentication) != "true" {
		return admission.User{}, fmt.Errorf("bootstrap token %q may not be used for authentication (%s is not \"true\")", id, bootstrapapi.BootstrapTokenUsageAuthentication)
	}
	groups, err := bootstrapsecrets.GetGroups(sec)
	if err != nil {
		return admission.User{}, fmt.Errorf("bootstrap token %q: %w", id, err)
	}
	return admission.User{Name: bootstrapapi.BootstrapUserPrefix + id, Groups: append(groups, "system:authenticated")}, nil
}
