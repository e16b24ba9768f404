package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	aggregatorclient "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"

	"github.com/petrel-project/petrel/controlplane/aggregator"
	"github.com/petrel-project/petrel/controlplane/pki"
	"github.com/petrel-project/petrel/controlplane/registry"
)

// extensionAuthName is the ConfigMap (in kube-system) and Role through
// which aggregated API servers built on k8s.io/apiserver learn whom to
// trust, as Kubernetes publishes them.
const extensionAuthName = "extension-apiserver-authentication"

// frontProxyCA is the CA of the front-proxy client certificate, apart from
// the cluster CA as Kubernetes recommends: a client certificate the cluster
// CA signs (a CSR an admin approved) can then never assert users to
// aggregated servers, whatever its name. Joining servers receive it.
func frontProxyCA(dataDir string) (*pki.CA, error) {
	ca, err := pki.LoadOrCreateNamedCA(filepath.Join(dataDir, "pki", "front-proxy"), "petrel-front-proxy-ca")
	if err != nil {
		return nil, fmt.Errorf("front-proxy CA: %w", err)
	}
	return ca, nil
}

// newAggregator makes the aggregator with the front-proxy client
// certificate: CN front-proxy-client from the front-proxy CA, the one name
// extension-apiserver-authentication allows to assert users in headers.
func newAggregator(ca *pki.CA, dataDir string) (*aggregator.Aggregator, error) {
	certPath, keyPath, err := ca.EnsurePair(filepath.Join(dataDir, "pki", "front-proxy"), "front-proxy-client", aggregator.ProxyClientName, nil, nil, true)
	if err != nil {
		return nil, fmt.Errorf("front-proxy client certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("front-proxy client certificate: %w", err)
	}
	return aggregator.New(cert), nil
}

// startAggregator connects the aggregator to the API through the loopback
// client; the leader keeps the APIServices' status.
func (s *Server) startAggregator(ctx context.Context, agg *aggregator.Aggregator, resources []*registry.Resource, leading func() bool) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.loopbackKubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ac, err := aggregatorclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ensureLocalAPIServices(ctx, ac, resources)
	agg.Start(ctx, cs, ac, leading)
	return nil
}

// groupPriorities are the groupPriorityMinimum and versionPriority of the
// built-in groups' Local APIServices, as Kubernetes ranks them (higher
// first in discovery); other groups get defaultPriority.
var groupPriorities = map[string][2]int32{
	"": {18000, 1}, "apiregistration.k8s.io": {17900, 15}, "apps": {17800, 15}, "events.k8s.io": {17750, 15},
	"authentication.k8s.io": {17700, 15}, "authorization.k8s.io": {17600, 15}, "autoscaling": {17500, 15},
	"batch": {17400, 15}, "certificates.k8s.io": {17300, 15}, "networking.k8s.io": {17200, 15}, "policy": {17100, 15},
	"rbac.authorization.k8s.io": {17000, 15}, "storage.k8s.io": {16800, 15}, "apiextensions.k8s.io": {16700, 15},
	"admissionregistration.k8s.io": {16700, 15}, "scheduling.k8s.io": {16600, 15}, "coordination.k8s.io": {16500, 15},
	"node.k8s.io": {16300, 15}, "discovery.k8s.io": {16200, 15}, "flowcontrol.apiserver.k8s.io": {16100, 21},
}

var defaultPriority = [2]int32{16000, 15}

// ensureLocalAPIServices makes a Local APIService for each built-in group
// version, as Kubernetes lists its own groups in `kubectl get apiservices`;
// one that exists (perhaps pointed at a service by its owner) is left as is.
func ensureLocalAPIServices(ctx context.Context, ac aggregatorclient.Interface, resources []*registry.Resource) {
	seen := map[schema.GroupVersion]bool{}
	for _, r := range append(append([]*registry.Resource{}, resources...), registry.Reviews()...) {
		gv := r.GVR.GroupVersion()
		if seen[gv] || r.Custom != nil {
			continue
		}
		seen[gv] = true
		prio, ok := groupPriorities[gv.Group]
		if !ok {
			prio = defaultPriority
		}
		// Newer versions of a group rank higher (autoscaling/v2 over v1).
		if gv.Group == "autoscaling" && gv.Version == "v2" {
			prio[1] = 30
		}
		svc := &apiregistrationv1.APIService{ObjectMeta: metav1.ObjectMeta{Name: gv.Version + "." + gv.Group,
			Labels: map[string]string{"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
			Spec: apiregistrationv1.APIServiceSpec{Group: gv.Group, Version: gv.Version, GroupPriorityMinimum: prio[0], VersionPriority: prio[1]}}
		if _, err := ac.ApiregistrationV1().APIServices().Create(ctx, svc, metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
			// A listing, not a need: the server serves without it.
			slog.Warn("aggregator: Local APIService", "apiservice", svc.Name, "err", err)
		}
	}
}

// ensureExtensionAuth publishes kube-system/extension-apiserver-authentication
// (the client CA, and the request-header CA with the allowed name and
// header names) and the Role that lets aggregated servers read it.
func ensureExtensionAuth(ctx context.Context, cs kubernetes.Interface, caPEM, frontProxyCAPEM []byte) error {
	list := func(v ...string) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	want := map[string]string{
		"client-ca-file":                     string(caPEM),
		"requestheader-client-ca-file":       string(frontProxyCAPEM),
		"requestheader-allowed-names":        list(aggregator.ProxyClientName),
		"requestheader-username-headers":     list(aggregator.HeaderUser),
		"requestheader-uid-headers":          list(aggregator.HeaderUID),
		"requestheader-group-headers":        list(aggregator.HeaderGroup),
		"requestheader-extra-headers-prefix": list(aggregator.HeaderExtraPrefix),
	}
	cms := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	cur, err := cms.Get(ctx, extensionAuthName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: extensionAuthName, Namespace: metav1.NamespaceSystem}, Data: want},
			metav1.CreateOptions{FieldManager: "petrel-bootstrap"})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("ConfigMap %s: %w", extensionAuthName, err)
		}
	case err != nil:
		return fmt.Errorf("ConfigMap %s: %w", extensionAuthName, err)
	default:
		same := len(cur.Data) == len(want)
		for k, v := range want {
			same = same && cur.Data[k] == v
		}
		if !same {
			cur.Data = want
			if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsConflict(err) {
				return fmt.Errorf("ConfigMap %s: %w", extensionAuthName, err)
			}
		}
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: extensionAuthName + "-reader", Namespace: metav1.NamespaceSystem,
		Annotations: map[string]string{"rbac.authorization.kubernetes.io/autoupdate": "true"}},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{extensionAuthName}}}}
	if _, err := cs.RbacV1().Roles(metav1.NamespaceSystem).Create(ctx, role, metav1.CreateOptions{FieldManager: "petrel-bootstrap"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("Role %s: %w", role.Name, err)
	}
	return nil
}
