package apiserver

import (
	"context"
	"fmt"
	"net/http"
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

// coreStore is the store of a core/v1 resource.
func (s *Server) coreStore(resource string) *generic.Store {
	return s.cfg.Registry.Store(corev1.SchemeGroupVersion.WithResource(resource))
}

// createToken serves serviceaccounts/<name>/token (TokenRequest), which
// the kubelet calls for projected tokens and `kubectl create token` for
// people.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	if s.cfg.Tokens == nil {
		s.writeError(w, r, apierrors.NewServiceUnavailable("this API server issues no service account tokens"))
		return
	}
	data, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := s.decodeBody(w, r, data, &authenticationv1.TokenRequest{}, authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tr := obj.(*authenticationv1.TokenRequest)
	gk := schema.GroupKind{Group: authenticationv1.GroupName, Kind: "TokenRequest"}
	ttl := defaultTokenTTL
	if e := tr.Spec.ExpirationSeconds; e != nil {
		p := field.NewPath("spec", "expirationSeconds")
		switch {
		case time.Duration(*e)*time.Second < minTokenTTL:
			s.writeError(w, r, apierrors.NewInvalid(gk, req.name, field.ErrorList{field.Invalid(p, *e, "may not specify a duration less than 10 minutes")}))
			return
		case *e > maxTokenTTL:
			s.writeError(w, r, apierrors.NewInvalid(gk, req.name, field.ErrorList{field.TooLong(p, *e, maxTokenTTL)}))
			return
		}
		ttl = time.Duration(*e) * time.Second
	}
	saObj, err := req.ep.store.Lookup(ctx, req.namespace, req.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sa := saObj.(*corev1.ServiceAccount)
	treq := tokens.Request{Namespace: sa.Namespace, ServiceAccount: tokens.Ref{Name: sa.Name, UID: string(sa.UID)},
		Audiences: tr.Spec.Audiences, TTL: ttl}
	if b := tr.Spec.BoundObjectRef; b != nil {
		p := field.NewPath("spec", "boundObjectRef")
		if b.Kind != "Pod" || (b.APIVersion != "" && b.APIVersion != "v1") {
			s.writeError(w, r, apierrors.NewInvalid(gk, req.name, field.ErrorList{field.NotSupported(p.Child("kind"), b.Kind, []string{"Pod"})}))
			return
		}
		podObj, err := s.coreStore("pods").Lookup(ctx, req.namespace, b.Name)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		pod := podObj.(*corev1.Pod)
		if b.UID != "" && b.UID != pod.UID {
			s.writeError(w, r, apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, b.Name,
				fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record (%s); the object might have been deleted and then recreated", b.UID, pod.UID)))
			return
		}
		treq.Pod = &tokens.Ref{Name: pod.Name, UID: string(pod.UID)}
		// Kubernetes 1.32 records the pod's node in the token too.
		if pod.Spec.NodeName != "" {
			if nobj, err := s.coreStore("nodes").Lookup(ctx, "", pod.Spec.NodeName); err == nil {
				treq.Node = &tokens.Ref{Name: pod.Spec.NodeName, UID: string(nobj.(*corev1.Node).UID)}
			} else if !apierrors.IsNotFound(err) {
				s.writeError(w, r, err)
				return
			}
		}
	}
	attrs := &admission.Attributes{Operation: admission.Create, Resource: req.ep.res.GVR, Subresource: "token",
		Kind: authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"), Namespace: req.namespace, Name: req.name, Object: tr}
	if err := s.cfg.Registry.Admit(ctx, attrs); err != nil {
		s.writeError(w, r, err)
		return
	}
	token, exp, err := s.cfg.Tokens.Issue(treq)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return
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
	s.writeObject(w, r, req, http.StatusCreated, out)
}

// AuthenticateToken says whether a bearer token is a bootstrap token (see
// bootstrapTokenUser) or a service account token of this cluster whose service account (and bound pod) still exist
// as it names them, and whose it is; the error says why not.
func (s *Server) AuthenticateToken(ctx context.Context, token string) (User, error) {
	if IsBootstrapToken(token) {
		return s.bootstrapTokenUser(ctx, token)
	}
	if s.cfg.Tokens == nil {
		return User{}, tokens.ErrNotOurs
	}
	c, err := s.cfg.Tokens.Verify(token)
	if err != nil {
		return User{}, err
	}
	return s.tokenUser(ctx, c)
}

// tokenUser is the user a verified token stands for, while its service
// account (and bound pod) still exist with the UIDs it names.
func (s *Server) tokenUser(ctx context.Context, c *tokens.Claims) (User, error) {
	k := c.Kubernetes
	saObj, err := s.coreStore("serviceaccounts").Lookup(ctx, k.Namespace, k.ServiceAccount.Name)
	if err != nil {
		return User{}, fmt.Errorf("service account %s/%s: %w", k.Namespace, k.ServiceAccount.Name, err)
	}
	uid := string(saObj.(*corev1.ServiceAccount).UID)
	if k.ServiceAccount.UID != "" && uid != k.ServiceAccount.UID {
		return User{}, fmt.Errorf("service account %s/%s was recreated", k.Namespace, k.ServiceAccount.Name)
	}
	if k.Pod != nil {
		podObj, err := s.coreStore("pods").Lookup(ctx, k.Namespace, k.Pod.Name)
		if err != nil {
			return User{}, fmt.Errorf("the token's pod %s/%s: %w", k.Namespace, k.Pod.Name, err)
		}
		if p := podObj.(*corev1.Pod); string(p.UID) != k.Pod.UID || p.DeletionTimestamp != nil {
			return User{}, fmt.Errorf("the token's pod %s/%s is gone", k.Namespace, k.Pod.Name)
		}
	}
	return User{Name: c.Subject, UID: uid,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + k.Namespace, "system:authenticated"}}, nil
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

// tokenExtra is the user extra of a verified token's claims.
func tokenExtra(c *tokens.Claims) map[string]authenticationv1.ExtraValue {
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
