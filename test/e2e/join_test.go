package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
)

// TestJoinWithToken: a node joins with the server's token and runs a pod
// with its own credentials only; those credentials are refused what is not
// the node's (another Node, another node's pods, Secrets no pod of its own
// mounts, listing Secrets); bad, expired and wrongly pinned tokens fail to
// join with a clear message.
func TestJoinWithToken(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)
	n := cluster.StartNode(t, s)
	admin := s.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The node holds its own kubeconfig and certificate, private, and is a node.
	for _, p := range []string{n.Kubeconfig(), filepath.Join(n.DataDir, "pki", "node-client-current.pem")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", n.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	nodeCS := kubernetes.NewForConfigOrDie(cfg)
	who, err := nodeCS.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := who.Status.UserInfo; u.Username != "system:node:"+n.Name || !contains(u.Groups, "system:nodes") {
		t.Fatalf("the node's credentials are %s %v, want system:node:%s in system:nodes", u.Username, u.Groups, n.Name)
	}
	csrs, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil || len(csrs.Items) == 0 {
		t.Fatalf("no CSR of the join (%v)", err)
	}
	out := kubectl(t, s, "", "get", "csr")
	mustContain(t, out, "kubernetes.io/kube-apiserver-client-kubelet", "system:bootstrap:", "Approved,Issued")

	// A pod on the node mounting one Secret; another Secret nobody mounts;
	// a pod bound to another (absent) node.
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "image", "import", "--data-dir", n.DataDir, archive).CombinedOutput(); err != nil {
		t.Fatalf("petrelctl image import: %v\n%s", err, out)
	}
	for _, name := range []string{"mine", "notmine"} {
		if _, err := admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
			StringData: map[string]string{"k": name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), "elsewhere", metav1.DeleteOptions{}) })
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node,
			Containers: []corev1.Container{{Name: "c", Image: images.TestServer, ImagePullPolicy: corev1.PullNever,
				VolumeMounts: []corev1.VolumeMount{{Name: "s", MountPath: "/secret"}}}},
			Volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "mine"}}}}}}
	}
	for _, p := range []*corev1.Pod{pod("mypod", n.Name), pod("theirpod", "elsewhere")} {
		if _, err := admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The node runs its pod with its own credentials: the Secret volume,
	// the service account token, the status.
	poll(t, "mypod Running on the joined node", 90*time.Second, func() error {
		p, err := admin.CoreV1().Pods("default").Get(ctx, "mypod", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || !podReady(p) {
			return fmt.Errorf("phase %s, conditions %+v", p.Status.Phase, p.Status.Conditions)
		}
		return nil
	})
	if got := kubectl(t, s, "", "exec", "mypod", "--", "cat", "/secret/k"); !strings.Contains(got, "mine") {
		t.Fatalf("the secret volume holds %q", got)
	}
	node, err := admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil || !nodeReady(node) {
		t.Fatalf("node %s not Ready: %v", n.Name, err)
	}

	// What the node may do.
	if _, err := nodeCS.CoreV1().Secrets("default").Get(ctx, "mine", metav1.GetOptions{}); err != nil {
		t.Errorf("the node may not read its pod's Secret: %v", err)
	}
	if _, err := nodeCS.CoreV1().Pods("default").Get(ctx, "mypod", metav1.GetOptions{}); err != nil {
		t.Errorf("the node may not read its own pod: %v", err)
	}
	if _, err := nodeCS.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name}); err != nil {
		t.Errorf("the node may not list its own pods: %v", err)
	}
	label := []byte(`{"metadata":{"labels":{"e2e.petrel.io/joined":"yes"}}}`)
	if _, err := nodeCS.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Errorf("the node may not label itself: %v", err)
	}
	// What it may not.
	forbidden := func(what string, err error, want string) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want 403 Forbidden", what, err)
			return
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not say %q", what, err, want)
		}
	}
	_, err = nodeCS.CoreV1().Nodes().Patch(ctx, "elsewhere", types.MergePatchType, label, metav1.PatchOptions{})
	forbidden("patching another node", err, `is not allowed to modify node "elsewhere"`)
	other, err := admin.CoreV1().Nodes().Get(ctx, "elsewhere", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other.Labels = map[string]string{"stolen": "yes"}
	_, err = nodeCS.CoreV1().Nodes().Update(ctx, other, metav1.UpdateOptions{})
	forbidden("updating another node", err, "is not allowed to modify node")
	_, err = nodeCS.CoreV1().Pods("default").Get(ctx, "theirpod", metav1.GetOptions{})
	forbidden("reading another node's pod", err, "no relationship found")
	// Listing every pod is allowed: the node enforces NetworkPolicy, which
	// needs every pod's address and labels (controlplane/nodeauth).
	err = nodeCS.CoreV1().Pods("default").Delete(ctx, "theirpod", metav1.DeleteOptions{})
	forbidden("deleting another node's pod", err, "can only delete pods with spec.nodeName set to itself")
	_, err = nodeCS.CoreV1().Secrets("default").Get(ctx, "notmine", metav1.GetOptions{})
	forbidden("reading a Secret no pod of the node mounts", err, "no relationship found")
	_, err = nodeCS.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+strings.Split(strings.Split(s.NodeToken(t), "::")[1], ".")[0], metav1.GetOptions{})
	forbidden("reading the join token's Secret", err, "no relationship found")
	_, err = nodeCS.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	forbidden("listing Secrets", err, "not list them")
	_, err = nodeCS.CoreV1().Pods("default").Create(ctx, pod("sneaky", n.Name), metav1.CreateOptions{})
	forbidden("creating a pod", err, "can only create mirror pods")

	// Anyone may read cluster-info, the CA a joining node pins.
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).
		Get(fmt.Sprintf("https://127.0.0.1:%d/api/v1/namespaces/kube-public/configmaps/cluster-info", s.Port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("cluster-info without credentials: %s", resp.Status)
	}

	// Joins that must fail, and say why.
	good := s.NodeToken(t)
	hash, boot, _ := strings.Cut(good, "::")
	id, _, _ := strings.Cut(boot, ".")
	wrongSecret := hash + "::" + id + ".0123456789abcdef"
	if wrongSecret == good {
		wrongSecret = hash + "::" + id + ".fedcba9876543210"
	}
	mustContain(t, cluster.NewNode(t, s, wrongSecret).RunToExit(time.Minute),
		"Unauthorized", fmt.Sprintf(`bootstrap token %q: the secret part of the token is wrong`, id))
	expiring := strings.TrimSpace(runPetrel(t, "token", "create", "--data-dir", s.DataDir, "--ttl", "1s"))
	time.Sleep(2 * time.Second)
	mustContain(t, cluster.NewNode(t, s, expiring).RunToExit(time.Minute), "Unauthorized", "expired")
	zeros := "K10" + strings.Repeat("0", 64) + "::" + boot
	mustContain(t, cluster.NewNode(t, s, zeros).RunToExit(time.Minute),
		"has hash "+strings.TrimPrefix(hash, "K10"), "the token pins "+strings.Repeat("0", 64))
}

// TestCertificateApproveDeny: requests other than nodes' wait for an admin:
// kubectl certificate approve gets one signed by the cluster CA, deny
// leaves another without a certificate.
func TestCertificateApproveDeny(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)
	admin := s.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range []string{"jane", "joe"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name, Organization: []string{"devs"}}}, key)
		if err != nil {
			t.Fatal(err)
		}
		manifest := fmt.Sprintf(`apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {name: %s}
spec:
  request: %s
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: 3600
  usages: [digital signature, client auth]
`, name, base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
		kubectl(t, s, manifest, "create", "-f", "-")
	}
	mustContain(t, kubectl(t, s, "", "get", "csr", "jane"), "kubernetes.io/kube-apiserver-client", "60m", "Pending")
	kubectl(t, s, "", "certificate", "approve", "jane")
	kubectl(t, s, "", "certificate", "deny", "joe")
	poll(t, "jane's certificate", 30*time.Second, func() error {
		csr, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, "jane", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(csr.Status.Certificate) == 0 {
			return fmt.Errorf("no certificate yet: %+v", csr.Status.Conditions)
		}
		block, _ := pem.Decode(csr.Status.Certificate)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return err
		}
		if cert.Subject.CommonName != "jane" || cert.NotAfter.Sub(cert.NotBefore) > time.Hour+10*time.Minute {
			t.Fatalf("certificate for %s valid %v", cert.Subject.CommonName, cert.NotAfter.Sub(cert.NotBefore))
		}
		return nil
	})
	mustContain(t, kubectl(t, s, "", "get", "csr"), "Approved,Issued", "Denied")
	time.Sleep(time.Second)
	joe, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, "joe", metav1.GetOptions{})
	if err != nil || len(joe.Status.Certificate) > 0 {
		t.Fatalf("a denied request was signed (%v)", err)
	}
	// The spec cannot change, nor a decision be taken back.
	joe.Spec.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}
	joe.Status.Conditions = nil
	if _, err := admin.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, "joe", joe, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("taking back a denial: got %v, want 422", err)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runPetrel runs the petrel binary and returns its output.
func runPetrel(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(cluster.Binary(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("petrel %v: %v\n%s", args, err, out)
	}
	return string(out)
}
