package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	authenticationv1 "k8s.io/api/authentication/v1"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/petrel-project/petrel/controlplane/tokens"
	"github.com/petrel-project/petrel/test/cluster"
)

// TestJobEmptySelector: kube-burner's churn re-creates Jobs with
// `selector: {}` and no manualSelector; the server generates the selector
// from the Job's uid, as Kubernetes does, instead of refusing the Job.
func TestJobEmptySelector(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	ctx := context.Background()
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "churn"}, Spec: batchv1.JobSpec{
		Selector: &metav1.LabelSelector{},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "churn"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "c", Image: "petrel.local/testserver:1"}}}}}}
	got, err := cs.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a Job with selector {} refused: %v", err)
	}
	uid := string(got.UID)
	if sel := got.Spec.Selector; sel == nil || len(sel.MatchLabels) != 1 || sel.MatchLabels[batchv1.ControllerUidLabel] != uid {
		t.Fatalf("selector %+v, want %s=%s", got.Spec.Selector, batchv1.ControllerUidLabel, uid)
	}
	l := got.Spec.Template.Labels
	if l["controller-uid"] != uid || l[batchv1.JobNameLabel] != "churn" || l["job-name"] != "churn" || l["app"] != "churn" {
		t.Fatalf("template labels %v", l)
	}
}

// TestKubernetesServiceOneSlice: the kubernetes Service has one EndpointSlice,
// the server's own: its Endpoints carry skip-mirror, so no
// kubernetes-mirror-0 appears; a cluster whose Endpoints lacked the label
// gets it at the next start and loses the stray mirror.
func TestKubernetesServiceOneSlice(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	ctx := context.Background()
	slices := func() []string {
		l, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{
			LabelSelector: labels.Set{discoveryv1.LabelServiceName: "kubernetes"}.String()})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range l.Items {
			names = append(names, s.Name)
		}
		return names
	}
	// The mirroring controller acts within a second of the Endpoints' write.
	time.Sleep(3 * time.Second)
	if n := slices(); len(n) != 1 || n[0] != "kubernetes" {
		t.Fatalf("kubernetes EndpointSlices %v, want [kubernetes]", n)
	}
	ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ep.Labels[discoveryv1.LabelSkipMirror] != "true" {
		t.Fatalf("kubernetes Endpoints labels %v", ep.Labels)
	}

	// An older cluster: the label gone, the mirror made.
	delete(ep.Labels, discoveryv1.LabelSkipMirror)
	if _, err := cs.CoreV1().Endpoints("default").Update(ctx, ep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool { return len(slices()) == 2 })
	s.Stop()
	s.Start()
	cs = s.Clientset()
	waitFor(t, 30*time.Second, func() bool { n := slices(); return len(n) == 1 && n[0] == "kubernetes" })
}

// TestNotFoundObjects: an object that is not there is `<resource> "<name>"
// not found` with its group, resource and name in details, whichever path
// asked (the object, a subresource, another group's view of it); a path
// the server does not serve is the generic message with empty details.
func TestNotFoundObjects(t *testing.T) {
	s := cluster.StartServer(t)
	for _, c := range []struct {
		path, message, group, kind, name string
	}{
		{"/api/v1/namespaces/default/pods/nope", `pods "nope" not found`, "", "pods", "nope"},
		{"/api/v1/namespaces/default/pods/nope/status", `pods "nope" not found`, "", "pods", "nope"},
		{"/apis/apps/v1/namespaces/default/deployments/nope", `deployments.apps "nope" not found`, "apps", "deployments", "nope"},
		{"/apis/apps/v1/namespaces/default/deployments/nope/scale", `deployments.apps "nope" not found`, "apps", "deployments", "nope"},
		{"/apis/events.k8s.io/v1/namespaces/default/events/nope", `events.events.k8s.io "nope" not found`, "events.k8s.io", "events", "nope"},
		{"/api/v1/namespaces/nope", `namespaces "nope" not found`, "", "namespaces", "nope"},
		{"/apis/autoscaling/v3", "the server could not find the requested resource", "", "", ""},
		{"/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/nope", `horizontalpodautoscalers.autoscaling "nope" not found`, "autoscaling", "horizontalpodautoscalers", "nope"},
		{"/api/v1/namespaces/default/configmaps/nope/status", "the server could not find the requested resource", "", "", ""},
	} {
		code, st, body := rawRequest(t, s, "GET", c.path, "", nil)
		if code != 404 || st.Reason != metav1.StatusReasonNotFound || st.Message != c.message {
			t.Errorf("%s: %d %s", c.path, code, body)
			continue
		}
		if d := st.Details; d == nil || d.Group != c.group || d.Kind != c.kind || d.Name != c.name {
			t.Errorf("%s: details %+v, want group %q kind %q name %q", c.path, st.Details, c.group, c.kind, c.name)
		}
	}
}

// TestTokenSubjectMustMatch: a token signed with the cluster's key whose sub
// is not the service account of its kubernetes.io claims authenticates no
// one (it authenticated as the sub); the same token with the matching sub
// does, so the test's forging is sound.
func TestTokenSubjectMustMatch(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	ctx := context.Background()
	pemBytes, err := os.ReadFile(filepath.Join(s.DataDir, "pki", "sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("sa.key is not PEM")
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var sa *corev1.ServiceAccount
	waitFor(t, 30*time.Second, func() bool {
		sa, err = cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	sign := func(sub string) string {
		now := time.Now()
		c := tokens.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Issuer: tokens.DefaultIssuer, Subject: sub, Audience: jwt.ClaimStrings{tokens.DefaultIssuer},
				ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now)},
			Kubernetes: tokens.Private{Namespace: "default", ServiceAccount: tokens.Ref{Name: "default", UID: string(sa.UID)}},
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	whoami := func(tok string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("https://127.0.0.1:%d/apis/authentication.k8s.io/v1/selfsubjectreviews", s.Port),
			strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var review authenticationv1.SelfSubjectReview
		_ = json.NewDecoder(resp.Body).Decode(&review)
		return resp.StatusCode, review.Status.UserInfo.Username
	}
	if code, user := whoami(sign("system:serviceaccount:default:default")); code != http.StatusCreated || user != "system:serviceaccount:default:default" {
		t.Fatalf("a well-formed token: %d %q", code, user)
	}
	for _, sub := range []string{"system:serviceaccount:kube-system:default", "system:admin"} {
		if code, user := whoami(sign(sub)); code != http.StatusUnauthorized {
			t.Errorf("sub %q on default/default's claims: %d, authenticated as %q; want 401", sub, code, user)
		}
	}
}
