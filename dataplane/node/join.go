package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/certificate/csr"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/petrel-project/petrel/jointoken"
)

// What a node joined with a token keeps in its data directory.
const (
	// NodeKubeconfigFile is the node's own kubeconfig: the cluster's CA and
	// address, and its client certificate in the pair file below.
	NodeKubeconfigFile = "node.kubeconfig"
	// nodeClientPrefix names the certificate store's files under
	// <data-dir>/pki: node-client-<time>.pem, and node-client-current.pem
	// pointing at the one in use (certificate and key, 0600).
	nodeClientPrefix = "node-client"
	// kubeletClientSigner signs node client certificates.
	kubeletClientSigner = "kubernetes.io/kube-apiserver-client-kubelet"
)

// nodeClientUsages are what a node asks its certificate for (an ECDSA key:
// no key encipherment).
var nodeClientUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}

// joinTimeout bounds how long a join waits for the server to answer and to
// sign: a server still starting answers within it.
var joinTimeout = 2 * time.Minute

// clusterInfoPath is the ConfigMap a joining node reads without credentials.
const clusterInfoPath = "/api/v1/namespaces/kube-public/configmaps/cluster-info"

// join gets the node its own credentials with a join token, as kubeadm's
// and k3s's agents do: trust the cluster's CA by the hash the token pins
// (or by the token's JWS signature of cluster-info), then ask for a client
// certificate system:node:<name> in system:nodes through a
// CertificateSigningRequest, authenticated by the bootstrap token. A
// certificate still valid from an earlier start is used again without the
// token. It writes <data-dir>/node.kubeconfig and starts the rotation that
// renews the certificate before it expires, with the node's own
// credentials; client-go reloads the certificate files when they change.
func join(ctx context.Context, opts Options) (*rest.Config, error) {
	if opts.Server == "" {
		return nil, errors.New("--token needs --server https://HOST:6443, the API server to join")
	}
	tok, err := jointoken.Parse(opts.Token)
	if err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	pkiDir := filepath.Join(opts.DataDir, "pki")
	if err := os.MkdirAll(pkiDir, 0o700); err != nil {
		return nil, err
	}
	kubeconfigPath := filepath.Join(opts.DataDir, NodeKubeconfigFile)
	store, err := certificate.NewFileStore(nodeClientPrefix, pkiDir, pkiDir, "", "")
	if err != nil {
		return nil, fmt.Errorf("node certificate store in %s: %w", pkiDir, err)
	}
	caPEM, err := readKubeconfigCA(kubeconfigPath)
	cert, _ := store.Current()
	if err != nil || !usable(cert, opts.NodeName) {
		jctx, cancel := context.WithTimeout(ctx, joinTimeout)
		defer cancel()
		if caPEM, err = discoverCA(jctx, opts.Server, tok); err != nil {
			return nil, err
		}
		bootstrap := &rest.Config{Host: opts.Server, BearerToken: tok.Bootstrap(), UserAgent: "petrel-node/" + opts.NodeName + " (bootstrap)",
			TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
		cs, err := kubernetes.NewForConfig(bootstrap)
		if err != nil {
			return nil, err
		}
		certPEM, keyPEM, err := requestNodeCertificate(jctx, cs, opts.NodeName, opts.CertificateLifetime)
		if err != nil {
			return nil, err
		}
		if _, err := store.Update(certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("storing the node certificate: %w", err)
		}
		slog.Info("node: joined with a token; got a client certificate", "user", "system:node:"+opts.NodeName, "kubeconfig", kubeconfigPath)
	} else {
		slog.Info("node: using the client certificate from an earlier join", "expires", cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	currentPath := filepath.Join(pkiDir, nodeClientPrefix+"-current.pem")
	if err := writeNodeKubeconfig(kubeconfigPath, opts.Server, caPEM, currentPath); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", kubeconfigPath, err)
	}
	if err := startRotation(ctx, opts, tok, caPEM, cfg, store); err != nil {
		return nil, err
	}
	return cfg, nil
}

// usable: a certificate for this node with at least a minute left (the
// rotation renews it from there).
func usable(cert *tls.Certificate, nodeName string) bool {
	return cert != nil && cert.Leaf != nil && cert.Leaf.Subject.CommonName == "system:node:"+nodeName &&
		time.Until(cert.Leaf.NotAfter) > time.Minute
}

// discoverCA reads cluster-info without trusting the server, checks its CA
// against the token (hash, else JWS signature), then reads it again over a
// connection verified with that CA, so that a server in the middle cannot
// answer the second time.
func discoverCA(ctx context.Context, server string, tok jointoken.Token) ([]byte, error) {
	var cm *corev1.ConfigMap
	var err error
	for {
		//nolint:gosec // nothing from this answer is trusted before its CA is checked below
		cm, err = getClusterInfo(ctx, server, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		if err == nil || !retryable(err) {
			break
		}
		slog.Info("node: waiting for the API server to join", "server", server, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reading cluster-info from %s: %w", server, err)
		case <-time.After(2 * time.Second):
		}
	}
	if err != nil {
		return nil, err
	}
	kubeconfig := cm.Data[bootstrapapi.KubeConfigKey]
	caPEM, err := clusterInfoCA(kubeconfig)
	if err != nil {
		return nil, err
	}
	if tok.CAHash != "" {
		got, err := jointoken.CAHashPEM(caPEM)
		if err != nil {
			return nil, err
		}
		if got != tok.CAHash {
			return nil, fmt.Errorf("the cluster CA served by %s has hash %s, but the token pins %s: the token is for another cluster (or something is in the middle); "+
				"compare with `openssl x509 -in <server data-dir>/pki/ca.crt -outform der | sha256sum`", server, got, tok.CAHash)
		}
	} else {
		sig, ok := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+tok.ID]
		if !ok {
			return nil, fmt.Errorf("cluster-info from %s is not signed for token %q: the token is unknown or expired (or pin the CA with a K10<hash>:: token)", server, tok.ID)
		}
		if !jws.DetachedTokenIsValid(sig, kubeconfig, tok.ID, tok.Secret) {
			return nil, fmt.Errorf("cluster-info from %s has a signature for token %q that the token's secret does not verify: a wrong token, or something is in the middle", server, tok.ID)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("cluster-info's CA is not a PEM certificate")
	}
	again, err := getClusterInfo(ctx, server, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("the API server %s does not prove it holds the cluster CA's certificate: %w", server, err)
	}
	if again.Data[bootstrapapi.KubeConfigKey] != kubeconfig {
		return nil, fmt.Errorf("cluster-info changed between two reads from %s; try again", server)
	}
	return caPEM, nil
}

// retryable: the server is not up yet (connection refused, timeouts, 5xx).
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, e.body)
}

func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests
	}
	var cert *tls.CertificateVerificationError
	return !errors.As(err, &cert)
}

func getClusterInfo(ctx context.Context, server string, tlsConfig *tls.Config) (*corev1.ConfigMap, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+clusterInfoPath, nil)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", server, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(body))}
	}
	cm := &corev1.ConfigMap{}
	if err := json.Unmarshal(body, cm); err != nil {
		return nil, fmt.Errorf("cluster-info from %s: %w", server, err)
	}
	return cm, nil
}

// clusterInfoCA is the CA of cluster-info's kubeconfig.
func clusterInfoCA(kubeconfig string) ([]byte, error) {
	cfg, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		return nil, fmt.Errorf("cluster-info's kubeconfig: %w", err)
	}
	for _, c := range cfg.Clusters {
		if len(c.CertificateAuthorityData) > 0 {
			return c.CertificateAuthorityData, nil
		}
	}
	return nil, errors.New("cluster-info's kubeconfig has no certificate authority data")
}

func readKubeconfigCA(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return clusterInfoCA(string(data))
}

// requestNodeCertificate asks for a client certificate system:node:<name>
// and waits until it is signed; an unauthorized token, a denied or failed
// request says so.
func requestNodeCertificate(ctx context.Context, cs kubernetes.Interface, nodeName string, lifetime time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, nodeCSRTemplate(nodeName), key)
	if err != nil {
		return nil, nil, err
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	var life *time.Duration
	if lifetime > 0 {
		life = &lifetime
	}
	name, uid, err := csr.RequestCertificateWithContext(ctx, cs, csrPEM, "", kubeletClientSigner, life, nodeClientUsages, key)
	if err != nil {
		return nil, nil, fmt.Errorf("the API server refused the join token: %w", err)
	}
	slog.Info("node: waiting for the certificate signing request to be approved and signed", "csr", name)
	certPEM, err = csr.WaitForCertificate(ctx, cs, name, uid)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate signing request %s was not signed (see kubectl describe csr %s): %w", name, name, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func nodeCSRTemplate(nodeName string) *x509.CertificateRequest {
	return &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}}}
}

// writeNodeKubeconfig writes the node's kubeconfig (0600), its client
// certificate and key read from certPath, which rotation replaces.
func writeNodeKubeconfig(path, server string, caPEM []byte, certPath string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["petrel"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["node"] = &clientcmdapi.AuthInfo{ClientCertificate: certPath, ClientKey: certPath}
	cfg.Contexts["petrel"] = &clientcmdapi.Context{Cluster: "petrel", AuthInfo: "node"}
	cfg.CurrentContext = "petrel"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// startRotation runs client-go's certificate manager over the store: it
// renews the certificate at 70-90% of its life with the node's own
// credentials (certificatesigningrequests/selfnodeclient), or with the
// bootstrap token once the certificate has expired (a node down too long).
func startRotation(ctx context.Context, opts Options, tok jointoken.Token, caPEM []byte, nodeCfg *rest.Config, store certificate.Store) error {
	_, err := newRotation(ctx, opts.NodeName, opts.CertificateLifetime, store, func(current *tls.Certificate) (kubernetes.Interface, error) {
		if current != nil && current.Leaf != nil && time.Now().Before(current.Leaf.NotAfter) {
			return kubernetes.NewForConfig(rest.CopyConfig(nodeCfg))
		}
		return kubernetes.NewForConfig(&rest.Config{Host: opts.Server, BearerToken: tok.Bootstrap(),
			TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}})
	})
	return err
}

// newRotation starts a certificate manager for nodeName's client
// certificate in store, asking for lifetime (0: the signer's choice).
func newRotation(ctx context.Context, nodeName string, lifetime time.Duration, store certificate.Store, clients certificate.ClientsetFunc) (certificate.Manager, error) {
	var life *time.Duration
	if lifetime > 0 {
		life = &lifetime
	}
	m, err := certificate.NewManager(&certificate.Config{
		Name:                         "node client certificate",
		ClientsetFn:                  clients,
		Template:                     nodeCSRTemplate(nodeName),
		SignerName:                   kubeletClientSigner,
		Usages:                       nodeClientUsages,
		CertificateStore:             store,
		RequestedCertificateLifetime: life,
		Ctx:                          &ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("node certificate rotation: %w", err)
	}
	m.Start()
	return m, nil
}
