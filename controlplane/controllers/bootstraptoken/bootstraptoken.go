// Package bootstraptoken keeps the bootstrap tokens' side of joining, as
// Kubernetes' bootstrapsigner and tokencleaner controllers do: the
// kube-public/cluster-info ConfigMap carries a JWS signature
// (jws-kubeconfig-<id>) of its kubeconfig for every token that may sign and
// has not expired, so that a node holding only a token can trust the CA it
// reads there; and token Secrets past their expiration are deleted.
package bootstraptoken

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstrapsecrets "k8s.io/cluster-bootstrap/util/secrets"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// clusterInfoKey is the loop key of the signer's work; other keys are
// token Secrets (namespace/name) for the cleaner.
const clusterInfoKey = "\x00cluster-info"

// Controller signs cluster-info and removes expired tokens.
type Controller struct {
	client     kubernetes.Interface
	secrets    corelisters.SecretLister
	configMaps corelisters.ConfigMapLister
	informers  []cache.SharedIndexInformer
	loop       *loop.Loop
	now        func() time.Time
}

// New builds the controller. Its informers see only bootstrap token
// Secrets in kube-system and the ConfigMaps of kube-public.
func New(cs kubernetes.Interface) *Controller {
	secInf := coreinformers.NewFilteredSecretInformer(cs, metav1.NamespaceSystem, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", string(bootstrapapi.SecretTypeBootstrapToken)).String()
		})
	cmInf := coreinformers.NewConfigMapInformer(cs, metav1.NamespacePublic, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	c := &Controller{client: cs, secrets: corelisters.NewSecretLister(secInf.GetIndexer()),
		configMaps: corelisters.NewConfigMapLister(cmInf.GetIndexer()), informers: []cache.SharedIndexInformer{secInf, cmInf}, now: time.Now}
	c.loop = loop.New("bootstrap tokens", c.sync)
	c.loop.Synced(secInf.HasSynced, cmInf.HasSynced)
	onSecret := func(obj interface{}) {
		c.loop.Enqueue(obj)
		c.loop.Add(clusterInfoKey)
	}
	_, _ = secInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onSecret, UpdateFunc: func(_, o interface{}) { onSecret(o) }, DeleteFunc: onSecret})
	onCM := func(obj interface{}) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == bootstrapapi.ConfigMapClusterInfo {
			c.loop.Add(clusterInfoKey)
		}
	}
	_, _ = cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onCM, UpdateFunc: func(_, o interface{}) { onCM(o) }})
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	for _, inf := range c.informers {
		go inf.Run(ctx.Done())
	}
	c.loop.Run(ctx, 1)
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	if key == clusterInfoKey {
		return c.signClusterInfo(ctx)
	}
	ns, name, _ := strings.Cut(key, "/")
	sec, err := c.secrets.Secrets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	left, expired := bootstrapsecrets.GetExpiration(sec, c.now())
	if !expired {
		if left > 0 {
			return left, nil // look again when it expires
		}
		return 0, nil
	}
	err = c.client.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &sec.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return 0, nil
	}
	return 0, err
}

// Signatures computes the jws-kubeconfig-<id> entries cluster-info should
// carry for its kubeconfig: one per token that may sign and has not expired.
func Signatures(kubeconfig string, tokens []*corev1.Secret, now time.Time) (map[string]string, error) {
	out := map[string]string{}
	for _, sec := range tokens {
		if sec.Type != bootstrapapi.SecretTypeBootstrapToken || sec.DeletionTimestamp != nil ||
			bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenUsageSigningKey) != "true" || bootstrapsecrets.HasExpired(sec, now) {
			continue
		}
		id, secret := bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenIDKey), bootstrapsecrets.GetData(sec, bootstrapapi.BootstrapTokenSecretKey)
		if id == "" || secret == "" {
			continue
		}
		sig, err := jws.ComputeDetachedSignature(kubeconfig, id, secret)
		if err != nil {
			return nil, fmt.Errorf("signing cluster-info with token %s: %w", id, err)
		}
		out[bootstrapapi.JWSSignatureKeyPrefix+id] = sig
	}
	return out, nil
}

func (c *Controller) signClusterInfo(ctx context.Context) (time.Duration, error) {
	cm, err := c.configMaps.ConfigMaps(metav1.NamespacePublic).Get(bootstrapapi.ConfigMapClusterInfo)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	kubeconfig, ok := cm.Data[bootstrapapi.KubeConfigKey]
	if !ok {
		return 0, nil
	}
	tokens, err := c.secrets.Secrets(metav1.NamespaceSystem).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	sigs, err := Signatures(kubeconfig, tokens, c.now())
	if err != nil {
		return 0, err
	}
	want := map[string]string{bootstrapapi.KubeConfigKey: kubeconfig}
	for k, v := range sigs {
		want[k] = v
	}
	same := len(want) == len(cm.Data)
	for k, v := range want {
		same = same && cm.Data[k] == v
	}
	if same {
		return 0, nil
	}
	fixed := cm.DeepCopy()
	fixed.Data = want
	_, err = c.client.CoreV1().ConfigMaps(metav1.NamespacePublic).Update(ctx, fixed, metav1.UpdateOptions{FieldManager: "bootstrap-signer"})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		c.loop.Add(clusterInfoKey)
		return 0, nil
	}
	return 0, err
}
