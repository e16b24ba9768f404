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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/storage"
	"github.com/petrel-project/petrel/controlplane/tokens"
)

// Token lifetimes, as Kubernetes bounds them.
const (
	defaultTokenTTL = time.Hour
	minTokenTTL     = 10 * time.Minute
	maxTokenTTL     = 1<<32 - 1
)

// store is the storage of a core/v1 resource.
func (s *Server) store(resource string) *storage.Store {
	if ep := s.byPath["/v1/"+resource]; ep != nil {
		return ep.store
	}
	return nil
}

// lookup reads an object, from the watch cache when it has it.
func lookup(ctx context.Context, st *storage.Store, namespace, name string) (runtime.Object, error) {
	key := st.Key(namespace, name)
	if obj, ok := st.CachedGet(key); ok {
		return obj, nil
	}
	return st.Get(ctx, key, name)
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
	saObj, err := lookup(ctx, req.ep.store, req.namespace, req.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sa := saObj.(*corev1.ServiceAccount)
	treq := tokens.Request{Namespace: sa.Namespace, ServiceAccount: tokens.Ref{Name: sa.Name, UID: string(sa.UID)},
		Audiences: tr.Spec.Audiences, TTL: ttl}
	var boundPod *corev1.Pod
	if b := tr.Spec.BoundObjectRef; b != nil {
		p := field.NewPath("spec", "boundObjectRef")
		if b.Kind != "Pod" || (b.APIVersion != "" && b.APIVersion != "v1") {
			s.writeError(w, r, apierrors.NewInvalid(gk, req.name, field.ErrorList{field.NotSupported(p.Child("kind"), b.Kind, []string{"Pod"})}))
			return
		}
		podObj, err := lookup(ctx, s.store("pods"), req.namespace, b.Name)
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
		boundPod = pod
	}
	if err := s.admitNodeCreate(ctx, req, tr, boundPod); err != nil {
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
	saObj, err := lookup(ctx, s.store("serviceaccounts"), k.Namespace, k.ServiceAccount.Name)
	if err != nil {
		return User{}, fmt.Errorf("service account %s/%s: %w", k.Namespace, k.ServiceAccount.Name, err)
	}
	uid := string(saObj.(*corev1.ServiceAccount).UID)
	if k.ServiceAccount.UID != "" && uid != k.ServiceAccount.UID {
		return User{}, fmt.Errorf("service account %s/%s was recreated", k.Namespace, k.ServiceAccount.Name)
	}
	if k.Pod != nil {
		podObj, err := lookup(ctx, s.store("pods"), k.Namespace, k.Pod.Name)
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

// admitServiceAccount gives a new pod its API credentials volume, as
// Kubernetes' ServiceAccount admission does; the pod's service account,
// when it exists, may opt out for pods that do not say.
func (s *Server) admitServiceAccount(ctx context.Context, pod *corev1.Pod) {
	var accountAutomount *bool
	if pod.Spec.AutomountServiceAccountToken == nil {
		name := pod.Spec.ServiceAccountName
		if name == "" {
			name = pod.Spec.DeprecatedServiceAccount
		}
		if name == "" {
			name = "default"
		}
		if st := s.store("serviceaccounts"); st != nil {
			if obj, err := lookup(ctx, st, pod.Namespace, name); err == nil {
				accountAutomount = obj.(*corev1.ServiceAccount).AutomountServiceAccountToken
			}
		}
	}
	registry.InjectAPIAccess(pod, accountAutomount)
}
