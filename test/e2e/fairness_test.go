package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestPriorityAndFairness: a service account whose FlowSchema puts it in a
// priority level of one share that rejects past it gets 429 with
// Retry-After when it floods the server, while the administrator (exempt)
// is served throughout; responses name the matched FlowSchema by UID.
func TestPriorityAndFairness(t *testing.T) {
	s := cluster.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := s.Clientset()
	for i := 0; i < 200; i++ {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i)},
			Data: map[string]string{"v": fmt.Sprintf("%0200d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	one, zero := int32(1), int32(0)
	if _, err := cs.FlowcontrolV1().PriorityLevelConfigurations().Create(ctx, &flowcontrolv1.PriorityLevelConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "tiny"},
		Spec: flowcontrolv1.PriorityLevelConfigurationSpec{Type: flowcontrolv1.PriorityLevelEnablementLimited,
			Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{NominalConcurrencyShares: &one, LendablePercent: &zero, BorrowingLimitPercent: &zero,
				LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.FlowcontrolV1().FlowSchemas().Create(ctx, &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: "noisy"},
		Spec: flowcontrolv1.FlowSchemaSpec{PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "tiny"},
			MatchingPrecedence: 500,
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindServiceAccount,
					ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: "default", Name: "noisy"}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"},
					Namespaces: []string{"*"}, ClusterScope: true}}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	noisy := serviceAccountClient(t, s, "default", "noisy", []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}})
	tok := noisy.CoreV1().RESTClient().(*rest.RESTClient).Client
	noisyFS, err := cs.FlowcontrolV1().FlowSchemas().Get(ctx, "noisy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exempt, err := cs.FlowcontrolV1().FlowSchemas().Get(ctx, "exempt", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := s.RESTConfig().Host + "/api/v1/namespaces/default/configmaps"
	get := func(c *http.Client) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	// The controller reads the new objects through its informers.
	waitFor(t, 20*time.Second, func() bool {
		resp, err := get(tok)
		return err == nil && resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID) == string(noisyFS.UID)
	})
	admin, err := rest.HTTPClientFor(s.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := get(admin); err != nil || resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID) != string(exempt.UID) {
		t.Fatalf("the admin's request: %v, FlowSchema UID %q (exempt's is %s)", err, resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID), exempt.UID)
	}

	var mu sync.Mutex
	codes := map[int]int{}
	retryAfter := ""
	var wg sync.WaitGroup
	stop := make(chan struct{})
	adminOK, adminFailed := 0, 0
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := get(admin)
			mu.Lock()
			if err == nil && resp.StatusCode == 200 {
				adminOK++
			} else {
				adminFailed++
			}
			mu.Unlock()
		}
	}()
	for round := 0; round < 3; round++ {
		for i := 0; i < 100; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := get(tok)
				if err != nil {
					return
				}
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusTooManyRequests {
					retryAfter = resp.Header.Get("Retry-After")
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	close(stop)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("noisy: %v; admin: %d served, %d failed", codes, adminOK, adminFailed)
	if codes[http.StatusTooManyRequests] == 0 || retryAfter == "" {
		t.Fatalf("300 concurrent lists in a level of one share: no 429 with Retry-After (%v)", codes)
	}
	if codes[http.StatusOK] == 0 {
		t.Fatalf("none of the noisy lists was served: %v", codes)
	}
	if adminFailed > 0 || adminOK == 0 {
		t.Fatalf("the exempt admin was refused during the flood: %d served, %d failed", adminOK, adminFailed)
	}
}
