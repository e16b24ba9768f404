// Package revision keeps the ControllerRevisions of StatefulSets and
// DaemonSets: one per pod template, named <owner>-<hash>, numbered in the
// order the templates appeared, as `kubectl rollout history` reads them.
package revision

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
)

// HashLabel marks pods with the revision of the template they came from: a
// StatefulSet's pods carry the revision's name, a DaemonSet's the bare hash
// (as Kubernetes labels them). A DaemonSet's revisions carry it too.
const HashLabel = appsv1.ControllerRevisionHashLabelKey

// StatefulSetHashLabel is where a StatefulSet's revisions carry their hash
// (Kubernetes' controller.kubernetes.io/hash).
const StatefulSetHashLabel = "controller.kubernetes.io/hash"

// Name is the name of owner's revision of a template with hash.
func Name(owner metav1.Object, hash string) string {
	return owner.GetName() + "-" + hash
}

// Hash names a pod template.
func Hash(t *corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	h := fnv.New32a()
	h.Write(b)
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// Owner is the StatefulSet or DaemonSet whose history this is.
type Owner interface {
	metav1.Object
	runtime.Object
}

// History reads revisions from an informer and writes them through the API.
type History struct {
	client kubernetes.Interface
	lister appslisters.ControllerRevisionLister
	// Synced tells when the informer's cache is in.
	Synced cache.InformerSynced
}

// NewHistory builds a History on a shared informer factory.
func NewHistory(cs kubernetes.Interface, factory informers.SharedInformerFactory) *History {
	inf := factory.Apps().V1().ControllerRevisions()
	return &History{client: cs, lister: inf.Lister(), Synced: inf.Informer().HasSynced}
}

// Ensure makes a ControllerRevision for template exist and returns its name
// (<owner>-<hash>). The revision is labelled with the template's labels and
// its hash under hashKey, as tools that match pods to revisions expect. A
// template seen before becomes the newest revision again, as on a rollback.
func (h *History) Ensure(ctx context.Context, owner Owner, gvk schema.GroupVersionKind, template *corev1.PodTemplateSpec, hashKey string) (string, error) {
	hash := Hash(template)
	name := Name(owner, hash)
	api := h.client.AppsV1().ControllerRevisions(owner.GetNamespace())
	all, err := h.list(owner)
	if err != nil {
		return "", err
	}
	var max int64
	var existing *appsv1.ControllerRevision
	for _, cr := range all {
		if cr.Revision > max {
			max = cr.Revision
		}
		if cr.Name == name {
			existing = cr
		}
	}
	if existing != nil {
		// Revisions written before they carried the hash get it on their
		// next use.
		if existing.Revision != max || existing.Labels[hashKey] != hash {
			upd := existing.DeepCopy()
			if existing.Revision != max {
				upd.Revision = max + 1
			}
			if upd.Labels == nil {
				upd.Labels = map[string]string{}
			}
			upd.Labels[hashKey] = hash
			if _, err := api.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
				return "", fmt.Errorf("renumber revision %s: %w", name, err)
			}
		}
		return name, nil
	}
	// The patch `kubectl rollout undo` applies to go back to this template.
	var tmpl map[string]any
	raw, _ := json.Marshal(template)
	_ = json.Unmarshal(raw, &tmpl)
	tmpl["$patch"] = "replace"
	data, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl}})
	lbls := map[string]string{}
	for k, v := range template.Labels {
		lbls[k] = v
	}
	lbls[hashKey] = hash
	cr := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: owner.GetNamespace(), Labels: lbls,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, gvk)}},
		Data:     runtime.RawExtension{Raw: data},
		Revision: max + 1,
	}
	// The informer may not have shown our last create yet: AlreadyExists is
	// that create.
	if _, err := api.Create(ctx, cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create revision %s: %w", name, err)
	}
	return name, nil
}

// Template is the pod template a revision of owner holds (what a
// StatefulSet's pods below its partition are still made from).
func (h *History) Template(owner Owner, name string) (*corev1.PodTemplateSpec, error) {
	all, err := h.list(owner)
	if err != nil {
		return nil, err
	}
	for _, cr := range all {
		if cr.Name != name {
			continue
		}
		var data struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(cr.Data.Raw, &data); err != nil {
			return nil, fmt.Errorf("revision %s: %w", name, err)
		}
		return &data.Spec.Template, nil
	}
	return nil, fmt.Errorf("revision %s of %s not found", name, owner.GetName())
}

// list returns the owner's revisions from the cache, oldest first.
func (h *History) list(owner Owner) ([]*appsv1.ControllerRevision, error) {
	all, err := h.lister.ControllerRevisions(owner.GetNamespace()).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []*appsv1.ControllerRevision
	for _, cr := range all {
		if ref := metav1.GetControllerOf(cr); ref != nil && ref.UID == owner.GetUID() {
			out = append(out, cr)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, nil
}

// Trim deletes the oldest revisions beyond limit that no pod uses.
func (h *History) Trim(ctx context.Context, owner Owner, limit int, inUse map[string]bool) error {
	all, err := h.list(owner)
	if err != nil {
		return err
	}
	excess := len(all) - limit
	for _, cr := range all {
		if excess <= 0 {
			break
		}
		if inUse[cr.Name] {
			continue
		}
		if err := h.client.AppsV1().ControllerRevisions(cr.Namespace).Delete(ctx, cr.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		excess--
	}
	return nil
}
