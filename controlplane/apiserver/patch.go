package apiserver

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

func (s *Server) patch(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	res := req.ep.res
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		s.writeError(w, r, newUnsupportedMediaType(r.Header.Get("Content-Type")))
		return
	}
	pt := types.PatchType(mt)
	switch pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType, types.ApplyYAMLPatchType:
	default:
		s.writeError(w, r, newUnsupportedMediaType(mt))
		return
	}
	patchBody, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	manager, err := managerName(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	force := r.URL.Query().Get("force") == "true"
	if pt == types.ApplyYAMLPatchType && r.URL.Query().Get("fieldManager") == "" {
		s.writeError(w, r, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("PatchOptions").GroupKind(), "",
			field.ErrorList{field.Required(field.NewPath("fieldManager"), "is required for apply patch")}))
		return
	}
	if req.subresource == "scale" {
		s.patchScale(ctx, w, r, req, pt, patchBody)
		return
	}
	if pt == types.StrategicMergePatchType && res.Custom != nil {
		// As Kubernetes: custom resources have no patch strategies.
		s.writeError(w, r, newUnsupportedMediaType(mt))
		return
	}
	var applyObj *unstructured.Unstructured
	if pt == types.ApplyYAMLPatchType {
		applyObj, err = s.decodeApply(w, r, req, patchBody)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	fn := func(cur runtime.Object) (runtime.Object, error) {
		setKindTo(cur, res.GVK())
		if applyObj != nil {
			fm := req.ep.fieldManager
			if (req.subresource == "status" || res.HasSubresource(req.subresource)) && req.ep.statusFM != nil {
				fm = req.ep.statusFM
			}
			merged, err := fm.Apply(cur, applyObj.DeepCopy(), manager, force)
			if err != nil {
				return nil, asAPIError(err)
			}
			typed, err := toTyped(merged, res.New())
			if err != nil {
				return nil, err
			}
			accessor(typed).SetResourceVersion("")
			return typed, nil
		}
		curJSON, err := jsonMarshal(cur)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		out, err := applyPatch(pt, curJSON, patchBody, res.New())
		if err != nil {
			return nil, err
		}
		obj, err := s.decodeWith(w, r, out, "application/json", res.New(), res.GVK())
		if err != nil {
			return nil, err
		}
		return obj, s.checkUnknownFields(w, r, req, obj)
	}
	opts, err := s.updateOptions(r, req, applyObj != nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := req.ep.store.Update(ctx, req.namespace, req.name, opts, fn)
	if err != nil && apierrors.IsNotFound(err) && applyObj != nil && req.subresource == "" {
		// Apply creates what does not exist yet.
		created, code, cerr := s.applyCreate(ctx, r, req, applyObj, manager, force)
		if cerr != nil {
			s.writeError(w, r, cerr)
			return
		}
		s.writeObject(w, r, req, code, created)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusOK, out)
}

func (s *Server) applyCreate(ctx context.Context, r *http.Request, req *request, applyObj *unstructured.Unstructured, manager string, force bool) (runtime.Object, int, error) {
	res := req.ep.res
	empty := res.New()
	setKindTo(empty, res.GVK())
	accessor(empty).SetName(req.name)
	accessor(empty).SetNamespace(req.namespace)
	merged, err := req.ep.fieldManager.Apply(empty, applyObj.DeepCopy(), manager, force)
	if err != nil {
		return nil, 0, asAPIError(err)
	}
	typed, err := toTyped(merged, res.New())
	if err != nil {
		return nil, 0, err
	}
	return s.createObject(ctx, r, req, typed, accessor(typed).GetManagedFields())
}

func (s *Server) decodeApply(w http.ResponseWriter, r *http.Request, req *request, body []byte) (*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSON(body)
	if err != nil {
		return nil, apierrors.NewBadRequest("error decoding YAML: " + err.Error())
	}
	// Duplicate keys, which the conversion above lets the last one win, are
	// what field validation reports in an apply configuration, by line, as
	// Kubernetes does.
	directive, err := fieldValidation(r)
	if err != nil {
		return nil, err
	}
	if directive != metav1.FieldValidationIgnore {
		if err := yaml.UnmarshalStrict(body, &map[string]interface{}{}); err != nil {
			if directive == metav1.FieldValidationStrict {
				return nil, apierrors.NewBadRequest("error strict decoding YAML: " + err.Error())
			}
			w.Header().Add("Warning", fmt.Sprintf("299 - %q", err.Error()))
		}
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, apierrors.NewBadRequest("error decoding apply patch: " + err.Error())
	}
	gvk := req.ep.res.GVK()
	if u.GroupVersionKind() != gvk {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s) or kind %q does not match %q",
			u.GetAPIVersion(), gvk.GroupVersion(), u.GetKind(), gvk.Kind))
	}
	if u.GetName() != "" && u.GetName() != req.name {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", u.GetName(), req.name))
	}
	if u.GetNamespace() != "" && u.GetNamespace() != req.namespace {
		return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	if u.GetName() == "" {
		u.SetName(req.name)
	}
	if req.ep.res.Namespaced && u.GetNamespace() == "" {
		u.SetNamespace(req.namespace)
	}
	return u, nil
}

func toTyped(obj runtime.Object, into runtime.Object) (runtime.Object, error) {
	if _, custom := into.(*unstructured.Unstructured); custom {
		return obj, nil
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
			return nil, apierrors.NewBadRequest("converting applied object: " + err.Error())
		}
		into.GetObjectKind().SetGroupVersionKind(u.GroupVersionKind())
		return into, nil
	}
	return obj, nil
}

func asAPIError(err error) error {
	if _, ok := err.(apierrors.APIStatus); ok {
		return err
	}
	return apierrors.NewBadRequest(err.Error())
}

// MaxJSONPatchOperations is the most operations a JSON patch may hold, as in
// Kubernetes.
const MaxJSONPatchOperations = 10000

// MaxJSONPatchCopyBytes bounds what the copy operations of one JSON patch may
// add, as Kubernetes does: each copy can double the document, so a few dozen
// operations of a small patch would otherwise ask for gigabytes.
const MaxJSONPatchCopyBytes = 3 << 20

// MaxPatchedObjectBytes bounds the object a patch of any type may produce: no
// more than a request body may carry.
const MaxPatchedObjectBytes = MaxRequestBodyBytes

func init() {
	// The library keeps its limit in a package variable.
	jsonpatch.AccumulatedCopySizeLimit = MaxJSONPatchCopyBytes
}

// applyPatch applies a JSON, merge or strategic merge patch to a JSON document,
// within the limits on operations, copies and the result's size.
func applyPatch(pt types.PatchType, doc, patch []byte, schemaObj runtime.Object) ([]byte, error) {
	var out []byte
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid JSON patch: " + err.Error())
		}
		if len(p) > MaxJSONPatchOperations {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", MaxJSONPatchOperations, len(p)))
		}
		out, err = p.Apply(doc)
		var copyErr *jsonpatch.AccumulatedCopySizeError
		if errors.As(err, &copyErr) {
			return nil, apierrors.NewRequestEntityTooLargeError(err.Error())
		}
		if err != nil {
			return nil, newUnprocessable(err)
		}
	case types.MergePatchType:
		var err error
		out, err = jsonpatch.MergePatch(doc, patch)
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid merge patch: " + err.Error())
		}
	case types.StrategicMergePatchType:
		var err error
		out, err = strategicpatch.StrategicMergePatch(doc, patch, schemaObj)
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid strategic merge patch: " + err.Error())
		}
	default:
		return nil, newUnsupportedMediaType(string(pt))
	}
	if len(out) > MaxPatchedObjectBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the patched object would be %d bytes; the limit is %d", len(out), MaxPatchedObjectBytes))
	}
	return out, nil
}

func (s *Server) patchScale(ctx context.Context, w http.ResponseWriter, r *http.Request, req *request, pt types.PatchType, body []byte) {
	scale, err := req.ep.store.GetScale(ctx, req.namespace, req.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if pt == types.ApplyYAMLPatchType {
		s.writeError(w, r, newUnsupportedMediaType("apply patches on /scale"))
		return
	}
	// The patch applies to the Scale as it is when written: the version
	// read here is no precondition unless the patch itself names one (a
	// /scale patch met a 409 when the controller wrote status in between).
	scale.ResourceVersion = ""
	doc, _ := jsonMarshal(scale)
	out, err := applyPatch(pt, doc, body, &autoscalingv1.Scale{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := s.decodeWith(w, r, out, "application/json", &autoscalingv1.Scale{}, autoscalingv1.SchemeGroupVersion.WithKind("Scale"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.applyScale(ctx, w, r, req, obj.(*autoscalingv1.Scale))
}
