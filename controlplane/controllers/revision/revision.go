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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
)

// HashLabel marks pods with the revision of the template they came from.
const HashLabel = appsv1.ControllerRevisionHashLabelKey

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

// Ensure makes a ControllerRevision for template exist and returns its name
// (<owner>-<hash>, the value pods carry in HashLabel). A template seen
// before becomes the newest revision again, as on a rollback.
func Ensure(ctx context.Context, cs kubernetes.Interface, owner Owner, gvk schema.GroupVersionKind, template *corev1.PodTemplateSpec) (string, error) {
	name := owner.GetName() + "-" + Hash(template)
	api := cs.AppsV1().ControllerRevisions(owner.GetNamespace())
	all, err := List(ctx, cs, owner)
	if err != nil {
		return "", err
	}
	var max int64
	var existing *appsv1.ControllerRevision
	for i := range all {
		if all[i].Revision > max {
			max = all[i].Revision
		}
		if all[i].Name == name {
			existing = &all[i]
		}
	}
	if existing != nil {
		if existing.Revision != max {
			existing.Revision = max + 1
			if _, err := api.Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
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
	cr := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: owner.GetNamespace(), Labels: template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, gvk)}},
		Data:     runtime.RawExtension{Raw: data},
		Revision: max + 1,
	}
	if _, err := api.Create(ctx, cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create revision %s: %w", name, err)
	}
	return name, nil
}

// List returns the owner's revisions, oldest first.
func List(ctx context.Context, cs kubernetes.Interface, owner Owner) ([]appsv1.ControllerRevision, error) {
	list, err := cs.AppsV1().ControllerRevisions(owner.GetNamespace()).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []appsv1.ControllerRevision
	for _, cr := range list.Items {
		if ref := metav1.GetControllerOf(&cr); ref != nil && ref.UID == owner.GetUID() {
			out = append(out, cr)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, nil
}

// Trim deletes the oldest revisions beyond limit that no pod uses.
func Trim(ctx context.Context, cs kubernetes.Interface, owner Owner, limit int, inUse map[string]bool) error {
	all, err := List(ctx, cs, owner)
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
		if err := cs.AppsV1().ControllerRevisions(cr.Namespace).Delete(ctx, cr.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		excess--
	}
	return nil
}
