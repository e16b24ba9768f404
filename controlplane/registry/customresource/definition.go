// Package customresource serves CustomResourceDefinitions
// (apiextensions.k8s.io/v1) and the kinds they define: the definition is a
// kind like any other; a controller turns each established definition into
// a strategy for the generic store (unstructured objects validated,
// defaulted and pruned by its structural schema through the apiextensions
// libraries, its status and scale subresources, printer columns, short names
// and categories) and serves it at once, and deletes its objects when the
// definition goes.
package customresource

import (
	"context"
	"time"

	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// CleanupFinalizer holds a definition until its objects are deleted.
const CleanupFinalizer = "customresourcecleanup.apiextensions.k8s.io"

// DefinitionResource is the strategy of customresourcedefinitions.
func DefinitionResource() *generic.Resource {
	gv := apiextensionsv1.SchemeGroupVersion
	crd := func(o runtime.Object) *apiextensionsv1.CustomResourceDefinition {
		return o.(*apiextensionsv1.CustomResourceDefinition)
	}
	return &generic.Resource{
		GVR: gv.WithResource("customresourcedefinitions"), Kind: "CustomResourceDefinition", Singular: "customresourcedefinition",
		ShortNames: []string{"crd", "crds"}, Categories: []string{"api-extensions"}, HasStatus: true, GenerationOnSpec: true,
		New:     func() runtime.Object { return &apiextensionsv1.CustomResourceDefinition{} },
		NewList: func() runtime.Object { return &apiextensionsv1.CustomResourceDefinitionList{} },
		Default: func(obj runtime.Object) { apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(crd(obj)) },
		PrepareForCreate: func(obj runtime.Object) {
			c := crd(obj)
			c.Finalizers = appendMissing(c.Finalizers, CleanupFinalizer)
			if v := storageVersionName(c); v != "" {
				c.Status.StoredVersions = []string{v}
			}
		},
		// A new storage version joins status.storedVersions with the update
		// that names it, as Kubernetes' strategy does: validation requires
		// it there, so a change of storage version was refused.
		PrepareForUpdate: func(sub string, obj, _ runtime.Object) {
			if sub != "" {
				return
			}
			c := crd(obj)
			if v := storageVersionName(c); v != "" {
				c.Status.StoredVersions = appendMissing(c.Status.StoredVersions, v)
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			in, errs := internal(crd(obj))
			if errs != nil {
				return errs
			}
			return apiextensionsvalidation.ValidateCustomResourceDefinition(context.Background(), in)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			in, errs := internal(crd(obj))
			if errs != nil {
				return errs
			}
			prev, errs := internal(crd(old))
			if errs != nil {
				return errs
			}
			return apiextensionsvalidation.ValidateCustomResourceDefinitionUpdate(context.Background(), in, prev)
		},
		Columns: []generic.Column{{Name: "Created At", Type: "date", Description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
			Cell: func(obj runtime.Object) interface{} { return generic.CreationTime(obj).UTC().Format(time.RFC3339) }}},
	}
}

// internal converts a definition to the internal version the
// apiextensions validation takes.
func internal(c *apiextensionsv1.CustomResourceDefinition) (*apiextensions.CustomResourceDefinition, field.ErrorList) {
	out := &apiextensions.CustomResourceDefinition{}
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(c, out, nil); err != nil {
		return nil, field.ErrorList{field.Invalid(field.NewPath("spec"), "", err.Error())}
	}
	return out, nil
}

// storageVersionName is the version marked storage, or "" when none is
// (validation says so).
func storageVersionName(c *apiextensionsv1.CustomResourceDefinition) string {
	for _, v := range c.Spec.Versions {
		if v.Storage {
			return v.Name
		}
	}
	return ""
}

func appendMissing(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// condition sets a definition condition, keeping its transition time when
// its status does not change.
func setCondition(st *apiextensionsv1.CustomResourceDefinitionStatus, t apiextensionsv1.CustomResourceDefinitionConditionType, status apiextensionsv1.ConditionStatus, reason, msg string) {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if c.Type == t {
			if c.Status != status {
				c.LastTransitionTime = metav1.Now()
			}
			c.Status, c.Reason, c.Message = status, reason, msg
			return
		}
	}
	st.Conditions = append(st.Conditions, apiextensionsv1.CustomResourceDefinitionCondition{Type: t, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()})
}
