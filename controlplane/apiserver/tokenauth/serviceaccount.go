// Package tokenauth is what the API server does with bearer tokens beyond
// checking signatures: who a service account or bootstrap token stands for,
// issuing tokens through TokenRequest, answering TokenReviews, and the
// issuer discovery that lets others verify tokens without asking. It reads
// stores and the issuer, and nothing of the REST machinery.
package tokenauth

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/tokens"
)

// Token lifetimes, as Kubernetes bounds them.
const (
	defaultTokenTTL = time.Hour
	minTokenTTL     = 10 * time.Minute
	maxTokenTTL     = 1<<32 - 1
)

// Authenticator says who a service account or bootstrap token stands for
// and issues service account tokens.
type Authenticator struct {
	// Tokens issues and checks service account tokens; nil: none.
	Tokens *tokens.Issuer
	// Registry holds the service accounts, pods, nodes and Secrets tokens
	// name, and runs the admission of TokenRequests.
	Registry *generic.Registry
}

// store is the store of a core/v1 resource.
func (a *Authenticator) store(resource string) *generic.Store {
	return a.Registry.Store(corev1.SchemeGroupVersion.WithResource(resource))
}

// Request issues the token a TokenRequest for the service account
// namespace/name asks for (gvr and store are serviceaccounts'), after its
// checks and admission, as serviceaccounts/<name>/token, which the kubelet
// calls for projected tokens and `kubectl create token` for people. The
// caller has checked that tokens are issued and decoded tr.
func (a *Authenticator) Request(ctx context.Context, gvr schema.GroupVersionResource, store *generic.Store, namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	gk := schema.GroupKind{Group: authenticationv1.GroupName, Kind: "TokenRequest"}
	ttl := defaultTokenTTL
	if e := tr.Spec.ExpirationSeconds; e != nil {
		p := field.NewPath("spec", "expirationSeconds")
		switch {
		case time.Duration(*e)*time.Second < minTokenTTL:
			return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.Invalid(p, *e, "may not specify a duration less than 10 minutes")})
		case *e > maxTokenTTL:
			return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.TooLong(p, *e, maxTokenTTL)})
		}
		ttl = time.Duration(*e) * time.Second
	}
	saObj, err := store.Lookup(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	sa := saObj.(*corev1.ServiceAccount)
	treq := tokens.Request{Namespace: sa.Namespace, ServiceAccount: tokens.Ref{Name: sa.Name, UID: string(sa.UID)},
		Audiences: tr.Spec.Audiences, TTL: ttl}
	if b := tr.Spec.BoundObjectRef; b != nil {
		p := field.NewPath("spec", "boundObjectRef")
		if b.Kind != "Pod" || (b.APIVersion != "" && b.APIVersion != "v1") {
			return nil, apierrors.NewInvalid(gk, name, field.ErrorList{field.NotSupported(p.Child("kind"), b.Kind, []string{"Pod"})})
		}
		podObj, err := a.store("pods").Lookup(ctx, namespace, b.Name)
		if err != nil {
			return nil, err
		}
		pod := podObj.(*corev1.Pod)
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, b.Name,
				fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record (%s); the object might have been deleted and then recreated", b.UID, pod.UID))
		}
		treq.Pod = &tokens.Ref{Name: pod.Name, UID: string(pod.UID)}
		// Kubernetes 1.32 records the pod's node in the token too.
		if pod.Spec.NodeName != "" {
			if nobj, err := a.store("nodes").Lookup(ctx, "", pod.Spec.NodeName); err == nil {
				treq.Node = &tokens.Ref{Name: pod.Spec.NodeName, UID: string(nobj.(*corev1.Node).UID)}
			} else if !apierrors.IsNotFound(err) {
				return nil, err
			}
		}
	}
	attrs := &admission.Attributes{Operation: admission.Create, Resource: gvr, Subresource: "token",
		Kind: authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"), Namespace: namespace, Name: name, Object: tr}
	if err := a.Registry.Admit(ctx, attrs); err != nil {
		return nil, err
	}
	token, exp, err := a.Tokens.Issue(treq)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	secs := int64(ttl / time.Second)
	out := &authenticationv1.TokenRequest{
		TypeMeta:   metav1.TypeMeta{Kind: "TokenRequest", APIVersion: authenticationv1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{Name: sa.Name, Namespace: sa.Namespace, CreationTimestamp: metav1.Now()},
		Spec:       tr.Spec,
		Status:     authenticationv1.TokenRequestStatus{Token: token, ExpirationTimestamp: metav1.NewTime(exp)},
	}
	out.Spec.ExpirationSeconds = &secs
	if len(out.Spec.Audiences) == 0 {
		out.Spec.Audiences = []string{tokens.DefaultIssuer}
	}
	return out, nil
}

// User is the user a verified token stands for, while its service
// account (and bound pod) still exist with the UIDs it names.
func (a *Authenticator) User(ctx context.Context, c *tokens.Claims) (admission.User, error) {
	k := c.Kubernetes
	saObj, err := a.store("serviceaccounts").Lookup(ctx, k.Namespace, k.ServiceAccount.Name)
	if err != nil {
		return admission.User{}, fmt.Errorf("service account %s/%s: %w", k.Namespace, k.ServiceAccount.Name, err)
	}
	uid := string(saObj.(*corev1.ServiceAccount).UID)
	if k.ServiceAccount.UID != "" && uid != k.ServiceAccount.UID {
		return admission.User{}, fmt.Errorf("service account %s/%s was recreated", k.Namespace, k.ServiceAccount.Name)
	}
	if k.Pod != nil {
		podObj, err := a.store("pods").Lookup(ctx, k.Namespace, k.Pod.Name)
		if err != nil {
			return admission.User{}, fmt.Errorf("the token's pod %s/%s: %w", k.Namespace, k.Pod.Name, err)
		}
		if p := podObj.(*corev1.Pod); string(p.UID) != k.Pod.UID || p.DeletionTimestamp != nil {
			return admission.User{}, fmt.Errorf("the token's pod %s/%s is gone", k.Namespace, k.Pod.Name)
		}
	}
	return admission.User{Name: c.Subject, UID: uid,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + k.Namespace, "system:authenticated"}}, nil
}

// Review answers a TokenReview: whether a token is good and whose it is,
// for services that take service account tokens from their own clients.
func (a *Authenticator) Review(ctx context.Context, review *authenticationv1.TokenReview) error {
	if review.Spec.Token == "" {
		return apierrors.NewInvalid(authenticationv1.SchemeGroupVersion.WithKind("TokenReview").GroupKind(), "",
			field.ErrorList{field.Required(field.NewPath("spec", "token"), "")})
	}
	if a.Tokens == nil {
		review.Status = authenticationv1.TokenReviewStatus{Error: "this server issues no service account tokens"}
		return nil
	}
	c, audiences, err := a.Tokens.VerifyFor(review.Spec.Token, review.Spec.Audiences)
	var u admission.User
	if err == nil {
		u, err = a.User(ctx, c)
	}
	if err != nil {
		review.Status = authenticationv1.TokenReviewStatus{Error: err.Error()}
		return nil
	}
	review.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: audiences,
		User: authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups, Extra: Extra(c)}}
	return nil
}

// The user extra a service account token carries, as Kubernetes 1.32 names
// it: the token's ID (so audit logs can tell tokens apart) and, for a
// pod-bound token, the pod and its node.
const (
	extraCredentialID = "authentication.kubernetes.io/credential-id"
	extraPodName      = "authentication.kubernetes.io/pod-name"
	extraPodUID       = "authentication.kubernetes.io/pod-uid"
	extraNodeName     = "authentication.kubernetes.io/node-name"
	extraNodeUID      = "authentication.kubernetes.io/node-uid"
)

// Extra is the user extra of a verified token's claims.
func Extra(c *tokens.Claims) map[string]authenticationv1.ExtraValue {
	out := map[string]authenticationv1.ExtraValue{}
	if c.ID != "" {
		out[extraCredentialID] = authenticationv1.ExtraValue{"JTI=" + c.ID}
	}
	if p := c.Kubernetes.Pod; p != nil {
		out[extraPodName] = authenticationv1.ExtraValue{p.Name}
		out[extraPodUID] = authenticationv1.ExtraValue{p.UID}
		if n := c.Kubernetes.Node; n != nil {
			out[extraNodeName] = authenticationv1.ExtraValue{n.Name}
			out[extraNodeUID] = authenticationv1.ExtraValue{n.UID}
		}
	}
	return out
}
