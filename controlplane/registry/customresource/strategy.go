package customresource

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/jsonpath"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// NewResource is the strategy of one served version of a definition.
func NewResource(crd *apiextensionsv1.CustomResourceDefinition, version string) (*generic.Resource, error) {
	names := crd.Spec.Names
	gv := schema.GroupVersion{Group: crd.Spec.Group, Version: version}
	gvk := gv.WithKind(names.Kind)
	listKind := names.ListKind
	if listKind == "" {
		listKind = names.Kind + "List"
	}
	validation, err := apihelpers.GetSchemaForVersion(crd, version)
	if err != nil {
		return nil, fmt.Errorf("schema of %s %s: %w", crd.Name, version, err)
	}
	subs, err := apihelpers.GetSubresourcesForVersion(crd, version)
	if err != nil {
		return nil, fmt.Errorf("subresources of %s %s: %w", crd.Name, version, err)
	}
	var structural *structuralschema.Structural
	var validator apiservervalidation.SchemaValidator
	if validation != nil && validation.OpenAPIV3Schema != nil {
		in, err := internalValidation(crd, validation)
		if err != nil {
			return nil, err
		}
		if structural, err = structuralschema.NewStructural(in.OpenAPIV3Schema); err != nil {
			return nil, fmt.Errorf("structural schema of %s %s: %w", crd.Name, version, err)
		}
		if validator, _, err = apiservervalidation.NewSchemaValidator(in.OpenAPIV3Schema); err != nil {
			return nil, fmt.Errorf("validator of %s %s: %w", crd.Name, version, err)
		}
	}
	// x-kubernetes-validations: CEL rules compiled once per definition.
	var celValidator *cel.Validator
	if structural != nil {
		celValidator = cel.NewValidator(structural, true, celconfig.PerCallLimit)
	}
	validate := func(obj runtime.Object) field.ErrorList {
		u := obj.(*unstructured.Unstructured)
		var errs field.ErrorList
		if u.GetAPIVersion() != gv.String() || u.GetKind() != names.Kind {
			errs = append(errs, field.Invalid(field.NewPath("apiVersion"), u.GetAPIVersion(), "must be "+gv.String()))
		}
		if validator != nil {
			errs = append(errs, apiservervalidation.ValidateCustomResource(nil, u.UnstructuredContent(), validator)...)
		}
		if celValidator != nil && len(errs) == 0 {
			celErrs, _ := celValidator.Validate(context.Background(), nil, structural, u.Object, nil, celconfig.RuntimeCELCostBudget)
			errs = append(errs, celErrs...)
		}
		return errs
	}
	hasStatus := subs != nil && subs.Status != nil
	res := &generic.Resource{
		GVR:  gv.WithResource(names.Plural),
		Kind: names.Kind, Singular: names.Singular, ShortNames: names.ShortNames, Categories: names.Categories,
		Namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		New: func() runtime.Object {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(gvk)
			return u
		},
		NewList: func() runtime.Object {
			l := &unstructured.UnstructuredList{}
			l.SetGroupVersionKind(gv.WithKind(listKind))
			return l
		},
		HasStatus:        hasStatus,
		GenerationOnSpec: true,
		Fields:           selectableFields(crd, version),
		PrepareForCreate: func(obj runtime.Object) {
			if hasStatus {
				delete(obj.(*unstructured.Unstructured).Object, "status")
			}
		},
		// The status/spec split of a typed kind is by struct field; here it
		// is by key: the object keeps its status, /status keeps the rest.
		PrepareForUpdate: func(sub string, obj, old runtime.Object) {
			u, o := obj.(*unstructured.Unstructured), old.(*unstructured.Unstructured)
			switch {
			case hasStatus && sub == "status":
				status, has := u.Object["status"]
				next := o.DeepCopy()
				if has {
					next.Object["status"] = status
				} else {
					delete(next.Object, "status")
				}
				// Metadata changes through /status are kept, as Kubernetes does.
				next.Object["metadata"] = u.Object["metadata"]
				u.Object = next.Object
			case hasStatus:
				if status, has := o.Object["status"]; has {
					u.Object["status"] = status
				} else {
					delete(u.Object, "status")
				}
			}
			if sub == "" && contentChanged(u, o) {
				u.SetGeneration(o.GetGeneration() + 1)
			}
		},
		Default: func(obj runtime.Object) {
			if structural == nil {
				return
			}
			u := obj.(*unstructured.Unstructured)
			structuralpruning.Prune(u.Object, structural, true)
			structuraldefaulting.Default(u.Object, structural)
		},
		// Validate runs on creates and updates alike; ValidateUpdate adds
		// the rules that compare with the stored object (CEL's oldSelf).
		Validate: validate,
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			if celValidator == nil {
				return nil
			}
			var oldObj interface{} = old.(*unstructured.Unstructured).Object
			errs, _ := celValidator.Validate(context.Background(), nil, structural, obj.(*unstructured.Unstructured).Object, oldObj, celconfig.RuntimeCELCostBudget)
			return onlyTransitionRules(errs, validate(obj))
		},
		Columns: columns(crd, version),
	}
	if subs != nil && subs.Scale != nil {
		res.Scale = scaleAccess(subs.Scale)
	}
	if structural != nil {
		res.UnknownFields = func(obj runtime.Object) []string {
			c := obj.(*unstructured.Unstructured).DeepCopy()
			return structuralpruning.PruneWithOptions(c.Object, structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
		}
	}
	custom, err := openAPI(crd, version)
	if err != nil {
		return nil, err
	}
	res.Custom = custom
	return res, nil
}

// contentChanged reports whether anything but metadata and status differs.
func contentChanged(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]interface{} {
		m := make(map[string]interface{}, len(u.Object))
		for k, v := range u.Object {
			if k != "metadata" && k != "status" {
				m[k] = v
			}
		}
		return m
	}
	return !apiequality.Semantic.DeepEqual(strip(a), strip(b))
}

// columns are the definition's additionalPrinterColumns, or AGE alone.
func columns(crd *apiextensionsv1.CustomResourceDefinition, version string) []generic.Column {
	var defs []apiextensionsv1.CustomResourceColumnDefinition
	for _, v := range crd.Spec.Versions {
		if v.Name == version {
			defs = v.AdditionalPrinterColumns
		}
	}
	if len(defs) == 0 {
		return []generic.Column{printers.AgeColumn}
	}
	out := make([]generic.Column, 0, len(defs))
	for _, d := range defs {
		jp := jsonpath.New(d.Name).AllowMissingKeys(true)
		if err := jp.Parse("{" + d.JSONPath + "}"); err != nil {
			continue // the definition's validation refuses such paths
		}
		typ := d.Type
		out = append(out, generic.Column{Name: d.Name, Type: typ, Format: d.Format, Priority: d.Priority, Description: d.Description,
			Cell: func(obj runtime.Object) interface{} { return cell(jp, typ, obj) }})
	}
	return out
}

// cell evaluates a printer column: the first value its path finds, as
// Kubernetes' table convertor does (dates as ages).
func cell(jp *jsonpath.JSONPath, typ string, obj runtime.Object) interface{} {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	results, err := jp.FindResults(u.Object)
	if err != nil || len(results) == 0 || len(results[0]) == 0 {
		return nil
	}
	v := results[0][0].Interface()
	switch typ {
	case "date":
		if s, ok := v.(string); ok {
			if t, err := parseTime(s); err == nil {
				return printers.Age(t)
			}
		}
	case "string":
		var buf bytes.Buffer
		if err := jp.PrintResults(&buf, results[0][:1]); err == nil {
			return strings.TrimSpace(buf.String())
		}
	}
	return v
}

// scaleAccess reads and writes the replica paths the definition names.
func scaleAccess(sc *apiextensionsv1.CustomResourceSubresourceScale) *generic.ScaleAccess {
	path := func(p string) []string { return strings.Split(strings.TrimPrefix(p, "."), ".") }
	return &generic.ScaleAccess{
		Get: func(obj runtime.Object) (int32, int32, string) {
			u := obj.(*unstructured.Unstructured)
			spec, _, _ := unstructured.NestedInt64(u.Object, path(sc.SpecReplicasPath)...)
			status, _, _ := unstructured.NestedInt64(u.Object, path(sc.StatusReplicasPath)...)
			var sel string
			if sc.LabelSelectorPath != nil {
				sel, _, _ = unstructured.NestedString(u.Object, path(*sc.LabelSelectorPath)...)
			}
			return int32(spec), int32(status), sel
		},
		Set: func(obj runtime.Object, replicas int32) {
			u := obj.(*unstructured.Unstructured)
			_ = unstructured.SetNestedField(u.Object, int64(replicas), path(sc.SpecReplicasPath)...)
		},
	}
}

// internalValidation is a version's schema in the internal types the
// apiextensions schema packages take.
func internalValidation(crd *apiextensionsv1.CustomResourceDefinition, validation *apiextensionsv1.CustomResourceValidation) (*apiextensions.CustomResourceValidation, error) {
	in := &apiextensions.CustomResourceValidation{}
	if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(validation, in, nil); err != nil {
		return nil, fmt.Errorf("converting the schema of %s: %w", crd.Name, err)
	}
	return in, nil
}

// structuralFor is a version's structural schema, nil when it has none.
func structuralFor(crd *apiextensionsv1.CustomResourceDefinition, version string) (*structuralschema.Structural, error) {
	validation, err := apihelpers.GetSchemaForVersion(crd, version)
	if err != nil || validation == nil || validation.OpenAPIV3Schema == nil {
		return nil, err
	}
	in, err := internalValidation(crd, validation)
	if err != nil {
		return nil, err
	}
	return structuralschema.NewStructural(in.OpenAPIV3Schema)
}

// selectableFields are the version's spec.versions[].selectableFields as
// field selector labels (the JSON path without its leading dot, as
// Kubernetes names them), each the value at that path: a string, integer or
// boolean, "" where the object has none. Nil when the version declares none.
func selectableFields(crd *apiextensionsv1.CustomResourceDefinition, version string) func(runtime.Object) fields.Set {
	var paths []string
	for _, v := range crd.Spec.Versions {
		if v.Name != version {
			continue
		}
		for _, f := range v.SelectableFields {
			paths = append(paths, strings.TrimPrefix(f.JSONPath, "."))
		}
	}
	if len(paths) == 0 {
		return nil
	}
	return func(obj runtime.Object) fields.Set {
		set := make(fields.Set, len(paths))
		u, _ := obj.(*unstructured.Unstructured)
		for _, p := range paths {
			set[p] = ""
			if u == nil {
				continue
			}
			if v, found, err := unstructured.NestedFieldNoCopy(u.Object, strings.Split(p, ".")...); err == nil && found {
				switch v := v.(type) {
				case string:
					set[p] = v
				case bool, int64, float64:
					set[p] = fmt.Sprint(v)
				}
			}
		}
		return set
	}
}

// openAPI builds the version's OpenAPI documents with the apiextensions
// builder, and the type converter server-side apply uses from them.
func openAPI(crd *apiextensionsv1.CustomResourceDefinition, version string) (*generic.CustomSchema, error) {
	// As kube-apiserver publishes it: the schema's validation (required,
	// enum, patterns) kept, which kubectl and the conformance suite read.
	v2, err := builder.BuildOpenAPIV2(crd, version, builder.Options{V2: true, IncludeSelectableFields: true})
	if err != nil {
		return nil, fmt.Errorf("OpenAPI v2 of %s %s: %w", crd.Name, version, err)
	}
	v3, err := builder.BuildOpenAPIV3(crd, version, builder.Options{V2: false})
	if err != nil {
		return nil, fmt.Errorf("OpenAPI v3 of %s %s: %w", crd.Name, version, err)
	}
	var tc managedfields.TypeConverter
	if v3.Components != nil {
		models := map[string]*spec.Schema{}
		for name, s := range v3.Components.Schemas {
			models[name] = s
		}
		preserve := crd.Spec.PreserveUnknownFields
		tc, err = managedfields.NewTypeConverter(models, preserve)
	}
	if tc == nil || err != nil {
		tc = managedfields.NewDeducedTypeConverter()
	}
	return &generic.CustomSchema{Definition: crd.Name, OpenAPIV2: v2, OpenAPIV3: v3, TypeConverter: tc}, nil
}

func parseTime(s string) (metav1.Time, error) {
	var t metav1.Time
	err := t.UnmarshalQueryParameter(s)
	return t, err
}

// onlyTransitionRules keeps the errors of an update's CEL run that its
// create-time run (already part of Validate) did not report: the rules that
// compare with oldSelf.
func onlyTransitionRules(update, create field.ErrorList) field.ErrorList {
	seen := map[string]bool{}
	for _, e := range create {
		seen[e.Error()] = true
	}
	var out field.ErrorList
	for _, e := range update {
		if !seen[e.Error()] {
			out = append(out, e)
		}
	}
	return out
}
