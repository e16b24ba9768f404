package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstrapsecrets "k8s.io/cluster-bootstrap/util/secrets"

	"github.com/petrel-project/petrel/jointoken"
)

// NodeTokenFile is where `petrel server` keeps the join token of its data
// directory: `petrel node --token "$(cat <data-dir>/node-token)"`.
const NodeTokenFile = "node-token"

// Names of the objects that let a joining node read cluster-info without
// credentials (kubeadm's, so its tooling finds them).
const (
	clusterInfoRole = "kubeadm:bootstrap-signer-clusterinfo"
	anonymousUser   = "system:anonymous"
)

// ClusterInfoKubeconfig is the kubeconfig kube-public/cluster-info holds: the
// cluster's CA and the API server's address, no credentials.
func ClusterInfoKubeconfig(server string, caPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	return clientcmd.Write(*cfg)
}

// ensureClusterInfo writes kube-public/cluster-info (its kubeconfig kept, so
// that the bootstrap signer's signatures of it stay valid) and the Role and
// RoleBinding that let system:anonymous read it, as kubeadm does.
func ensureClusterInfo(ctx context.Context, cs kubernetes.Interface, server string, caPEM []byte) error {
	kubeconfig, err := ClusterInfoKubeconfig(server, caPEM)
	if err != nil {
		return err
	}
	cms := cs.CoreV1().ConfigMaps(metav1.NamespacePublic)
	cur, err := cms.Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
			Data: map[string]string{bootstrapapi.KubeConfigKey: string(kubeconfig)}}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("cluster-info: %w", err)
		}
	case err != nil:
		return fmt.Errorf("cluster-info: %w", err)
	case cur.Data[bootstrapapi.KubeConfigKey] != string(kubeconfig):
		// A new address or CA: the old signatures sign the old content.
		cur.Data = map[string]string{bootstrapapi.KubeConfigKey: string(kubeconfig)}
		if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "petrel-bootstrap"}); err != nil {
			return fmt.Errorf("cluster-info: %w", err)
		}
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: clusterInfoRole, Namespace: metav1.NamespacePublic},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{bootstrapapi.ConfigMapClusterInfo}}}}
	if _, err := cs.RbacV1().Roles(metav1.NamespacePublic).Create(ctx, role, metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("role %s: %w", clusterInfoRole, err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterInfoRole, Namespace: metav1.NamespacePublic},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: clusterInfoRole},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: anonymousUser}}}
	if _, err := cs.RbacV1().RoleBindings(metav1.NamespacePublic).Create(ctx, binding, metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("role binding %s: %w", clusterInfoRole, err)
	}
	return nil
}

// TokenOptions describe a new bootstrap token.
type TokenOptions struct {
	// TTL is how long it authenticates; 0 is forever.
	TTL         time.Duration
	Description string
	// ExtraGroups are added to system:bootstrappers (each
	// system:bootstrappers:<name>).
	ExtraGroups []string
}

// CreateBootstrapToken stores a new bootstrap token as Kubernetes does, the
// Secret kube-system/bootstrap-token-<id> of type
// bootstrap.kubernetes.io/token, usable to authenticate and to sign
// cluster-info, and returns it pinned to the CA (caPEM).
func CreateBootstrapToken(ctx context.Context, cs kubernetes.Interface, caPEM []byte, opts TokenOptions) (jointoken.Token, error) {
	hash, err := jointoken.CAHashPEM(caPEM)
	if err != nil {
		return jointoken.Token{}, err
	}
	for _, g := range opts.ExtraGroups {
		if err := bootstraputil.ValidateBootstrapGroupName(g); err != nil {
			return jointoken.Token{}, err
		}
	}
	for {
		tok, err := jointoken.Generate(hash)
		if err != nil {
			return jointoken.Token{}, err
		}
		err = storeBootstrapToken(ctx, cs, tok, opts)
		if apierrors.IsAlreadyExists(err) {
			continue // the ID is taken: draw another
		}
		return tok, err
	}
}

func storeBootstrapToken(ctx context.Context, cs kubernetes.Interface, tok jointoken.Token, opts TokenOptions) error {
	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:               []byte(tok.ID),
		bootstrapapi.BootstrapTokenSecretKey:           []byte(tok.Secret),
		bootstrapapi.BootstrapTokenUsageAuthentication: []byte("true"),
		bootstrapapi.BootstrapTokenUsageSigningKey:     []byte("true"),
	}
	if opts.Description != "" {
		data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(opts.Description)
	}
	if opts.TTL > 0 {
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(time.Now().Add(opts.TTL).UTC().Format(time.RFC3339))
	}
	if len(opts.ExtraGroups) > 0 {
		data[bootstrapapi.BootstrapTokenExtraGroupsKey] = []byte(strings.Join(opts.ExtraGroups, ","))
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(tok.ID), Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken, Data: data,
	}
	_, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, sec, metav1.CreateOptions{FieldManager: "petrel-token"})
	return err
}

// ensureNodeToken keeps <data-dir>/node-token (0600) and its bootstrap
// token Secret: made at first start, without expiry; put back when someone
// deleted the Secret, so the printed join command keeps working.
func ensureNodeToken(ctx context.Context, cs kubernetes.Interface, dataDir string, caPEM []byte) (jointoken.Token, error) {
	path := filepath.Join(dataDir, NodeTokenFile)
	return ensureTokenFile(ctx, cs, path, caPEM, TokenOptions{Description: "the join token of " + path + " (petrel server)"})
}

// ensureServerToken keeps <data-dir>/server-token as ensureNodeToken keeps
// node-token: a token in ServerGroup, which other servers join with.
func ensureServerToken(ctx context.Context, cs kubernetes.Interface, dataDir string, caPEM []byte) (jointoken.Token, error) {
	path := filepath.Join(dataDir, ServerTokenFile)
	return ensureTokenFile(ctx, cs, path, caPEM, TokenOptions{Description: "the server join token of " + path + " (petrel server --join)",
		ExtraGroups: []string{ServerGroup}})
}

// ensureTokenFile keeps the token file path (0600) and its Secret.
func ensureTokenFile(ctx context.Context, cs kubernetes.Interface, path string, caPEM []byte, opts TokenOptions) (jointoken.Token, error) {
	hash, err := jointoken.CAHashPEM(caPEM)
	if err != nil {
		return jointoken.Token{}, err
	}
	if data, err := os.ReadFile(path); err == nil {
		tok, err := jointoken.Parse(string(data))
		if err != nil {
			return jointoken.Token{}, fmt.Errorf("%s: %w", path, err)
		}
		if tok.CAHash != hash {
			// The CA was made anew (its files removed): the old pin is wrong.
			tok.CAHash = hash
			if err := writeNodeToken(path, tok); err != nil {
				return jointoken.Token{}, err
			}
		}
		sec, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, bootstraputil.BootstrapTokenSecretName(tok.ID), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if err := storeBootstrapToken(ctx, cs, tok, opts); err != nil && !apierrors.IsAlreadyExists(err) {
				return jointoken.Token{}, fmt.Errorf("bootstrap token of %s: %w", path, err)
			}
		case err != nil:
			return jointoken.Token{}, fmt.Errorf("bootstrap token of %s: %w", path, err)
		case bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenSecretKey) != tok.Secret:
			return jointoken.Token{}, fmt.Errorf("the Secret kube-system/%s does not hold the token in %s: delete one of them", sec.Name, path)
		}
		return tok, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return jointoken.Token{}, err
	}
	tok, err := CreateBootstrapToken(ctx, cs, caPEM, opts)
	if err != nil {
		return jointoken.Token{}, fmt.Errorf("token of %s: %w", path, err)
	}
	return tok, writeNodeToken(path, tok)
}

func writeNodeToken(path string, tok jointoken.Token) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
