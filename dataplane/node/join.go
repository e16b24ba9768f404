package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/certificate/csr"

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
		if caPEM, err = jointoken.DiscoverCA(jctx, opts.Server, tok); err != nil {
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
	server := opts.Server
	if opts.kubeconfigServer != "" {
		server = opts.kubeconfigServer
	}
	if err := writeNodeKubeconfig(kubeconfigPath, server, caPEM, currentPath); err != nil {
		return nil, err
	}
	// The node's clients reach the servers through its load balancer.
	cfg, err := clientcmd.BuildConfigFromFlags(opts.Server, kubeconfigPath)
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

func readKubeconfigCA(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return jointoken.ClusterInfoCA(string(data))
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
