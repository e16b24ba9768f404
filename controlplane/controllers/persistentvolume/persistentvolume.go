// Package persistentvolume binds PersistentVolumeClaims to
// PersistentVolumes and provisions volumes for the cluster's default
// StorageClass, `local`: a hostPath directory on the node the scheduler
// chose for the claim's first pod (volumeBindingMode WaitForFirstConsumer),
// as k3s's local-path provisioner gives out. Claims of other classes (or
// none) bind to the smallest Available volume that satisfies them, as
// Kubernetes' PV controller; a volume whose claim is gone is Released, and
// deleted when it was provisioned here with reclaimPolicy Delete.
package persistentvolume

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// The default class and the annotations Kubernetes' volume binding uses.
const (
	// ClassName is the StorageClass the server creates at start, marked
	// default.
	ClassName = "local"
	// Provisioner is that class's provisioner: this controller.
	Provisioner = "petrel.io/local-path"
	// AnnSelectedNode is set on a WaitForFirstConsumer claim by the
	// scheduler: the node of its first pod.
	AnnSelectedNode = "volume.kubernetes.io/selected-node"
	// AnnStorageProvisioner says which provisioner a claim waits for.
	AnnStorageProvisioner = "volume.kubernetes.io/storage-provisioner"
	annBindCompleted      = "pv.kubernetes.io/bind-completed"
	annBoundByController  = "pv.kubernetes.io/bound-by-controller"
	annProvisionedBy      = "pv.kubernetes.io/provisioned-by"
	// IsDefaultClassAnnotation marks the default StorageClass.
	IsDefaultClassAnnotation = "storageclass.kubernetes.io/is-default-class"
	// DefaultCapacity is what a claim that asks for no size gets.
	DefaultCapacity = "1Gi"
)

// Class is the StorageClass the server creates.
func Class() *storagev1.StorageClass {
	wait := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1.PersistentVolumeReclaimDelete
	return &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: ClassName, Annotations: map[string]string{IsDefaultClassAnnotation: "true"}},
		Provisioner:       Provisioner,
		VolumeBindingMode: &wait,
		ReclaimPolicy:     &del,
	}
}

// Controller binds and provisions.
type Controller struct {
	client  kubernetes.Interface
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	nodes   corelisters.NodeLister
	// dir is where provisioned volumes live on the nodes.
	dir  string
	loop *loop.Loop
}

// volumeKey marks a queue key as a volume's (claims are namespace/name).
const volumeKey = "pv:"

// New builds the controller on the control plane's informers; dir is the
// directory on each node under which provisioned volumes are made.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, dir string) *Controller {
	pvcInf, pvInf := factory.Core().V1().PersistentVolumeClaims(), factory.Core().V1().PersistentVolumes()
	scInf, nodeInf := factory.Storage().V1().StorageClasses(), factory.Core().V1().Nodes()
	c := &Controller{client: cs, claims: pvcInf.Lister(), volumes: pvInf.Lister(), classes: scInf.Lister(), nodes: nodeInf.Lister(), dir: dir}
	c.loop = loop.New("persistent volumes", loop.Simple(c.sync))
	c.loop.Synced(pvcInf.Informer().HasSynced, pvInf.Informer().HasSynced, scInf.Informer().HasSynced, nodeInf.Informer().HasSynced)
	_, _ = pvcInf.Informer().AddEventHandler(c.loop.Handlers())
	// A claim that goes frees its volume.
	_, _ = pvcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj interface{}) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if pvc, ok := obj.(*corev1.PersistentVolumeClaim); ok && pvc.Spec.VolumeName != "" {
			c.loop.Add(volumeKey + pvc.Spec.VolumeName)
		}
	}})
	_, _ = pvInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.volumeChanged,
		UpdateFunc: func(_, obj interface{}) { c.volumeChanged(obj) },
		DeleteFunc: c.volumeChanged,
	})
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) { c.loop.Run(ctx, 2) }

// volumeChanged looks at the volume and, when it is new or freed, at the
// claims that wait for one.
func (c *Controller) volumeChanged(obj interface{}) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok {
		return
	}
	c.loop.Add(volumeKey + pv.Name)
	if ref := pv.Spec.ClaimRef; ref != nil {
		c.loop.Add(ref.Namespace + "/" + ref.Name)
		return
	}
	claims, _ := c.claims.List(labels.Everything())
	for _, pvc := range claims {
		if pvc.Spec.VolumeName == "" {
			c.loop.Add(pvc.Namespace + "/" + pvc.Name)
		}
	}
}

func (c *Controller) sync(ctx context.Context, key string) error {
	if name, ok := strings.CutPrefix(key, volumeKey); ok {
		return c.syncVolume(ctx, name)
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	pvc, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || pvc.DeletionTimestamp != nil {
		return err
	}
	if pvc.Spec.VolumeName != "" {
		return c.finishBinding(ctx, pvc)
	}
	class := ""
	if pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	var sc *storagev1.StorageClass
	if class != "" {
		sc, _ = c.classes.Get(class)
	}
	node := pvc.Annotations[AnnSelectedNode]
	waitForConsumer := sc != nil && sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
	if waitForConsumer && node == "" {
		return nil // the scheduler names the node with the claim's first pod
	}
	if pv := c.bestVolume(pvc, class, node); pv != nil {
		return c.bind(ctx, pvc, pv)
	}
	if sc != nil && sc.Provisioner == Provisioner && node != "" {
		return c.provision(ctx, pvc, sc, node)
	}
	return nil // nothing fits yet: a new volume brings the claim back
}

// bestVolume is the smallest Available volume of the class that satisfies
// the claim (and, with a node chosen, can be used there); a volume
// pre-bound to the claim wins.
func (c *Controller) bestVolume(pvc *corev1.PersistentVolumeClaim, class, node string) *corev1.PersistentVolume {
	all, _ := c.volumes.List(labels.Everything())
	want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	var sel labels.Selector
	if pvc.Spec.Selector != nil {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(pvc.Spec.Selector); err != nil {
			return nil
		}
	}
	var nodeObj *corev1.Node
	if node != "" {
		nodeObj, _ = c.nodes.Get(node)
	}
	var fits []*corev1.PersistentVolume
	for _, pv := range all {
		if ref := pv.Spec.ClaimRef; ref != nil {
			if ref.Namespace == pvc.Namespace && ref.Name == pvc.Name && (ref.UID == "" || ref.UID == pvc.UID) {
				return pv
			}
			continue
		}
		if pv.Status.Phase != corev1.VolumeAvailable && pv.Status.Phase != "" || pv.DeletionTimestamp != nil {
			continue
		}
		if pv.Spec.StorageClassName != class || (sel != nil && !sel.Matches(labels.Set(pv.Labels))) {
			continue
		}
		if mode(pv.Spec.VolumeMode) != mode(pvc.Spec.VolumeMode) || !hasModes(pv.Spec.AccessModes, pvc.Spec.AccessModes) {
			continue
		}
		if have := pv.Spec.Capacity[corev1.ResourceStorage]; have.Cmp(want) < 0 {
			continue
		}
		if nodeObj != nil && pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil {
			if ok, _ := nodeaffinity.NewLazyErrorNodeSelector(pv.Spec.NodeAffinity.Required).Match(nodeObj); !ok {
				continue
			}
		}
		fits = append(fits, pv)
	}
	if len(fits) == 0 {
		return nil
	}
	sort.Slice(fits, func(i, j int) bool {
		a, b := fits[i].Spec.Capacity[corev1.ResourceStorage], fits[j].Spec.Capacity[corev1.ResourceStorage]
		if d := a.Cmp(b); d != 0 {
			return d < 0
		}
		return fits[i].Name < fits[j].Name
	})
	return fits[0]
}

func mode(m *corev1.PersistentVolumeMode) corev1.PersistentVolumeMode {
	if m == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *m
}

func hasModes(have, want []corev1.PersistentVolumeAccessMode) bool {
	set := map[corev1.PersistentVolumeAccessMode]bool{}
	for _, m := range have {
		set[m] = true
	}
	for _, m := range want {
		if !set[m] {
			return false
		}
	}
	return true
}

// bind points the volume at the claim, then the claim at the volume (the
// order Kubernetes uses, so that a crash between leaves a volume that only
// this claim can take), then marks both Bound.
func (c *Controller) bind(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) error {
	if ref := pv.Spec.ClaimRef; ref == nil || ref.UID != pvc.UID {
		upd := pv.DeepCopy()
		upd.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID, ResourceVersion: pvc.ResourceVersion}
		if upd.Annotations == nil {
			upd.Annotations = map[string]string{}
		}
		upd.Annotations[annBoundByController] = "yes"
		var err error
		if pv, err = c.client.CoreV1().PersistentVolumes().Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("binding volume %s to claim %s/%s: %w", upd.Name, pvc.Namespace, pvc.Name, err)
		}
	}
	upd := pvc.DeepCopy()
	upd.Spec.VolumeName = pv.Name
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[annBindCompleted] = "yes"
	upd.Annotations[annBoundByController] = "yes"
	claim, err := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("binding claim %s/%s to volume %s: %w", pvc.Namespace, pvc.Name, pv.Name, err)
	}
	return c.finishBinding(ctx, claim)
}

// finishBinding sets the phases of a claim whose volumeName is set and of
// its volume.
func (c *Controller) finishBinding(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	pv, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if pvc.Status.Phase == corev1.ClaimBound {
			upd := pvc.DeepCopy()
			upd.Status.Phase = corev1.ClaimLost
			_, err = c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Name != pvc.Name || ref.Namespace != pvc.Namespace || (ref.UID != "" && ref.UID != pvc.UID) {
		if ref == nil && pv.Status.Phase != corev1.VolumeReleased {
			// A claim that names a volume: the volume is claimed for it.
			return c.bind(ctx, pvc, pv)
		}
		return nil // the volume is another claim's: this one stays Pending
	}
	if pv.Status.Phase != corev1.VolumeBound {
		upd := pv.DeepCopy()
		upd.Status.Phase = corev1.VolumeBound
		upd.Status.Message, upd.Status.Reason = "", ""
		if _, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("volume %s status: %w", pv.Name, err)
		}
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		upd := pvc.DeepCopy()
		upd.Status.Phase = corev1.ClaimBound
		upd.Status.AccessModes = pv.Spec.AccessModes
		upd.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: pv.Spec.Capacity[corev1.ResourceStorage]}
		if _, err := c.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("claim %s/%s status: %w", pvc.Namespace, pvc.Name, err)
		}
	}
	return nil
}

// provision makes a hostPath volume on node for the claim, pre-bound to it.
func (c *Controller) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass, node string) error {
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.IsZero() {
		size = resource.MustParse(DefaultCapacity)
	}
	hostname := node
	if n, err := c.nodes.Get(node); err == nil && n.Labels[corev1.LabelHostname] != "" {
		hostname = n.Labels[corev1.LabelHostname]
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if sc.ReclaimPolicy != nil {
		reclaim = *sc.ReclaimPolicy
	}
	dirType := corev1.HostPathDirectoryOrCreate
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pvc-" + string(pvc.UID), Annotations: map[string]string{annProvisionedBy: Provisioner}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes: modes, VolumeMode: pvc.Spec.VolumeMode,
			PersistentVolumeReclaimPolicy: reclaim, StorageClassName: sc.Name,
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: filepath.Join(c.dir, fmt.Sprintf("pvc-%s_%s_%s", pvc.UID, pvc.Namespace, pvc.Name)), Type: &dirType}},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname}}}}}}},
		},
	}
	if _, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("provisioning a volume for claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	created, err := c.client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return c.bind(ctx, pvc, created)
}

// syncVolume releases a volume whose claim is gone, and deletes it when it
// was provisioned here with reclaimPolicy Delete; a volume without a claim
// is Available.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	pv, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || pv.DeletionTimestamp != nil {
		return err
	}
	setPhase := func(phase corev1.PersistentVolumePhase) error {
		if pv.Status.Phase == phase {
			return nil
		}
		upd := pv.DeepCopy()
		upd.Status.Phase = phase
		now := metav1.NewTime(time.Now())
		upd.Status.LastPhaseTransitionTime = &now
		_, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		return err
	}
	ref := pv.Spec.ClaimRef
	if ref == nil {
		return setPhase(corev1.VolumeAvailable)
	}
	claim, err := c.client.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err == nil && (ref.UID == "" || claim.UID == ref.UID) {
		return nil // bound, or pre-bound and waiting for its claim
	}
	if ref.UID == "" {
		return nil // pre-bound to a claim not made yet
	}
	if pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete && pv.Annotations[annProvisionedBy] == Provisioner {
		err := c.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	return setPhase(corev1.VolumeReleased)
}
