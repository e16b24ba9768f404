package kubelet

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// projectedToken is a service account token the kubelet wrote into a pod,
// kept until it is due for renewal.
type projectedToken struct {
	token     []byte
	refreshAt time.Time
	expires   time.Time
}

// serviceAccountToken is the token a serviceAccountToken projection of the
// pod asks for: one bound to the pod (good only while it exists), asked of
// the API server's TokenRequest, and renewed once 80 % of its life has
// passed, as the kubelet does. While the API server cannot be reached, a
// token that has not expired yet is kept.
func (k *Kubelet) serviceAccountToken(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) ([]byte, error) {
	secs := int64(3600)
	if p.ExpirationSeconds != nil {
		secs = *p.ExpirationSeconds
	}
	key := fmt.Sprintf("%s|%d|%s", p.Audience, secs, p.Path)
	ps := k.podState(string(pod.UID))
	k.mu.Lock()
	cur, ok := ps.tokens[key]
	k.mu.Unlock()
	now := time.Now()
	if ok && now.Before(cur.refreshAt) {
		return cur.token, nil
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs,
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}
	if p.Audience != "" {
		req.Spec.Audiences = []string{p.Audience}
	}
	out, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		if ok && now.Before(cur.expires) {
			return cur.token, nil
		}
		return nil, errMount{fmt.Errorf("token of service account %q: %w", sa, err)}
	}
	exp := out.Status.ExpirationTimestamp.Time
	fresh := projectedToken{token: []byte(out.Status.Token), refreshAt: now.Add(exp.Sub(now) * 8 / 10), expires: exp}
	k.mu.Lock()
	if ps.tokens == nil {
		ps.tokens = map[string]projectedToken{}
	}
	ps.tokens[key] = fresh
	k.mu.Unlock()
	return fresh.token, nil
}
