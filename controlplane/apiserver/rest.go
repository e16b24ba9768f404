package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/apiserver/liststream"
	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, req *request) {
	res := req.ep.res
	switch req.subresource {
	case "":
	case "status":
		if !res.HasStatus {
			s.notFound(w, r)
			return
		}
	case "scale":
		if res.Scale == nil {
			s.notFound(w, r)
			return
		}
	case "binding", "eviction":
		if res.Kind != "Pod" || req.verb != "create" {
			s.notFound(w, r)
			return
		}
	case "proxy":
		if res.GVR.Group != "" || (res.Kind != "Pod" && res.Kind != "Service" && res.Kind != "Node") {
			s.notFound(w, r)
			return
		}
		s.proxy.Serve(w, r, proxyRequest(req))
		return
	case "log", "exec", "attach", "portforward":
		if res.Kind != "Pod" {
			s.notFound(w, r)
			return
		}
		s.proxy.ServeNode(w, r, proxyRequest(req))
		return
	case "token":
		if res.Kind != "ServiceAccount" || req.verb != "create" {
			s.notFound(w, r)
			return
		}
	case "finalize":
		if res.Kind != "Namespace" || req.verb != "update" {
			s.notFound(w, r)
			return
		}
	default:
		if !res.HasSubresource(req.subresource) || (req.verb != "get" && req.verb != "update" && req.verb != "patch") {
			s.notFound(w, r)
			return
		}
	}
	switch req.verb {
	case "get":
		s.get(w, r, req)
	case "list":
		s.list(w, r, req)
	case "watch":
		s.watch(w, r, req)
	case "create":
		switch req.subresource {
		case "binding":
			s.bind(w, r, req)
		case "eviction":
			s.evict(w, r, req)
		case "token":
			s.createToken(w, r, req)
		default:
			if req.name != "" {
				s.writeError(w, r, apierrors.NewMethodNotSupported(res.GVR.GroupResource(), "create on a named resource"))
				return
			}
			s.create(w, r, req)
		}
	case "update":
		s.update(w, r, req)
	case "patch":
		s.patch(w, r, req)
	case "delete":
		s.delete(w, r, req)
	case "deletecollection":
		s.deleteCollection(w, r, req)
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(res.GVR.GroupResource(), r.Method))
	}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	obj, err := req.ep.store.Get(ctx, req.namespace, req.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.subresource == "scale" {
		s.writeObject(w, r, req, http.StatusOK, req.ep.store.ScaleOf(obj))
		return
	}
	s.writeObject(w, r, req, http.StatusOK, obj)
}

// listOptions decodes the query of a list or watch.
func listOptions(r *http.Request) (*metav1.ListOptions, error) {
	var opts metav1.ListOptions
	if err := ParameterCodec.DecodeParameters(r.URL.Query(), schema.GroupVersion{Version: "v1"}, &opts); err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	return &opts, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	opts, err := listOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	result, err := req.ep.store.List(ctx, req.namespace, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeList(w, r, req, result)
}

func (s *Server) writeList(w http.ResponseWriter, r *http.Request, req *request, result *generic.ListResult) {
	list := req.ep.res.NewList()
	setKind(list)
	lm, err := meta.ListAccessor(list)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	lm.SetResourceVersion(strconv.FormatInt(result.ResourceVersion, 10))
	lm.SetContinue(result.Continue)
	lm.SetRemainingItemCount(result.RemainingItemCount)
	choice, ok := negotiateFor(r, req, allowTable)
	if !ok {
		s.writeError(w, r, newNotAcceptable("only application/json, application/yaml and application/vnd.kubernetes.protobuf are served"))
		return
	}
	if choice.as == "Table" {
		t := s.table(r, req.ep.res, result.Items)
		t.ResourceVersion = lm.GetResourceVersion()
		t.Continue = result.Continue
		t.RemainingItemCount = result.RemainingItemCount
		s.encode(w, http.StatusOK, choice, t)
		return
	}
	if choice.as == "PartialObjectMetadataList" {
		pl := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: choice.asGroup + "/" + choice.asVersion}}
		pl.ListMeta = metav1.ListMeta{ResourceVersion: lm.GetResourceVersion(), Continue: result.Continue, RemainingItemCount: result.RemainingItemCount}
		for _, it := range result.Items {
			pl.Items = append(pl.Items, *partial(it, choice.asGroup+"/"+choice.asVersion))
		}
		s.encode(w, http.StatusOK, choice, pl)
		return
	}
	if choice.contentType == "application/json" && result.ItemJSON != nil {
		s.writeJSONList(w, r, list, result)
		return
	}
	if choice.contentType == liststream.ProtobufContentType && result.ItemProto != nil {
		if err := liststream.Protobuf(w, list, result); err != nil {
			s.writeError(w, r, err)
		}
		return
	}
	if err := meta.SetList(list, result.Items); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.encode(w, http.StatusOK, choice, list)
}

func allowTable(as, group, version string) bool {
	switch as {
	case "Table":
		return group == "meta.k8s.io" && (version == "v1" || version == "v1beta1")
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		return group == "meta.k8s.io" && version == "v1"
	}
	return false
}

func partial(obj runtime.Object, apiVersion string) *metav1.PartialObjectMetadata {
	acc := accessor(obj)
	om := metav1.ObjectMeta{
		Name: acc.GetName(), GenerateName: acc.GetGenerateName(), Namespace: acc.GetNamespace(), UID: acc.GetUID(),
		ResourceVersion: acc.GetResourceVersion(), Generation: acc.GetGeneration(), CreationTimestamp: acc.GetCreationTimestamp(),
		DeletionTimestamp: acc.GetDeletionTimestamp(), DeletionGracePeriodSeconds: acc.GetDeletionGracePeriodSeconds(),
		Labels: acc.GetLabels(), Annotations: acc.GetAnnotations(), OwnerReferences: acc.GetOwnerReferences(),
		Finalizers: acc.GetFinalizers(), ManagedFields: acc.GetManagedFields(),
	}
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: apiVersion}, ObjectMeta: om}
}

// table renders objects as a Table with the includeObject the client asked for.
func (s *Server) table(r *http.Request, res *registry.Resource, objs []runtime.Object) *metav1.Table {
	include := r.URL.Query().Get("includeObject")
	var rowObject func(runtime.Object) runtime.RawExtension
	switch include {
	case "None":
	case "Object":
		rowObject = func(o runtime.Object) runtime.RawExtension {
			if res.Custom != nil {
				data, _ := jsonMarshal(o)
				return runtime.RawExtension{Raw: data}
			}
			data, _ := runtime.Encode(Codecs.LegacyCodec(res.GVR.GroupVersion()), o)
			return runtime.RawExtension{Raw: data}
		}
	default:
		rowObject = func(o runtime.Object) runtime.RawExtension {
			data, _ := jsonMarshal(partial(o, "meta.k8s.io/v1"))
			return runtime.RawExtension{Raw: data}
		}
	}
	t := res.Table(objs, false, rowObject)
	t.TypeMeta = metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}
	return t
}

// writeObject writes one object, as a Table or metadata when asked.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, req *request, code int, obj runtime.Object) {
	setKind(obj)
	choice, ok := negotiateFor(r, req, allowTable)
	if !ok {
		s.writeError(w, r, newNotAcceptable("only application/json, application/yaml and application/vnd.kubernetes.protobuf are served"))
		return
	}
	if _, isStatus := obj.(*metav1.Status); !isStatus && req.subresource != "scale" {
		switch choice.as {
		case "Table":
			t := s.table(r, req.ep.res, []runtime.Object{obj})
			t.ResourceVersion = accessor(obj).GetResourceVersion()
			s.encode(w, code, choice, t)
			return
		case "PartialObjectMetadata":
			s.encode(w, code, choice, partial(obj, "meta.k8s.io/v1"))
			return
		}
	}
	s.encode(w, code, choice, obj)
}

// readBody reads a request body up to the size limit.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBodyBytes+1))
	if err != nil {
		return nil, apierrors.NewBadRequest("reading request body: " + err.Error())
	}
	if len(data) > MaxRequestBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", MaxRequestBodyBytes))
	}
	return data, nil
}

// fieldValidation returns the directive, checked.
func fieldValidation(r *http.Request) (string, error) {
	v := r.URL.Query().Get("fieldValidation")
	switch v {
	case "":
		return metav1.FieldValidationWarn, nil
	case metav1.FieldValidationIgnore, metav1.FieldValidationWarn, metav1.FieldValidationStrict:
		return v, nil
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("fieldValidation must be one of Ignore, Warn or Strict, got %q", v))
}

// decodeBody decodes a request body into a new object of the endpoint's kind
// (or into `into`), applying the field validation directive.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, data []byte, into runtime.Object, gvk schema.GroupVersionKind) (runtime.Object, error) {
	return s.decodeWith(w, r, data, r.Header.Get("Content-Type"), into, gvk)
}

// decodeWith decodes data of the given content type.
func (s *Server) decodeWith(w http.ResponseWriter, r *http.Request, data []byte, contentType string, into runtime.Object, gvk schema.GroupVersionKind) (runtime.Object, error) {
	directive, err := fieldValidation(r)
	if err != nil {
		return nil, err
	}
	dec, mt, err := decoderFor(contentType, directive != metav1.FieldValidationIgnore)
	if err != nil {
		if errors.Is(err, errUnsupportedMediaType) {
			return nil, newUnsupportedMediaType(mt)
		}
		return nil, apierrors.NewBadRequest(err.Error())
	}
	obj, actual, err := dec.Decode(data, &gvk, into)
	if err != nil {
		if strictErr, ok := runtime.AsStrictDecodingError(err); ok && obj != nil {
			if directive == metav1.FieldValidationStrict {
				return nil, apierrors.NewBadRequest(strictErr.Error())
			}
			for _, e := range strictErr.Errors() {
				w.Header().Add("Warning", fmt.Sprintf("299 - %q", e))
			}
		} else {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized or malformed: %v", err))
		}
	}
	if actual != nil && (actual.Kind != gvk.Kind || actual.GroupVersion() != gvk.GroupVersion()) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s) or kind %q does not match %q",
			actual.GroupVersion(), gvk.GroupVersion(), actual.Kind, gvk.Kind))
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, nil
}

func isDryRun(r *http.Request) (bool, error) {
	for _, v := range r.URL.Query()["dryRun"] {
		if v != metav1.DryRunAll {
			return false, apierrors.NewBadRequest(fmt.Sprintf("dryRun must be %q, got %q", metav1.DryRunAll, v))
		}
		return true, nil
	}
	return false, nil
}

// managerName is the field manager of a write: ?fieldManager, else the client's
// user agent up to its first "/" as Kubernetes does.
func managerName(r *http.Request) (string, error) {
	if m := r.URL.Query().Get("fieldManager"); m != "" {
		if len(m) > 128 {
			return "", apierrors.NewBadRequest("fieldManager: Too long: may not be more than 128 bytes")
		}
		return m, nil
	}
	ua := r.UserAgent()
	if i := strings.Index(ua, "/"); i >= 0 {
		ua = ua[:i]
	}
	if ua == "" {
		ua = "unknown"
	}
	return ua, nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	res := req.ep.res
	data, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := s.decodeBody(w, r, data, res.New(), res.GVK())
	if err == nil {
		err = s.checkUnknownFields(w, r, req, obj)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, code, err := s.createObject(ctx, r, req, obj, nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, code, out)
}

// createObject creates obj through the store with the request's dry-run
// and field manager; applied carries the managed fields of a server-side
// apply (nil for a plain create).
func (s *Server) createObject(ctx context.Context, r *http.Request, req *request, obj runtime.Object, applied []metav1.ManagedFieldsEntry) (runtime.Object, int, error) {
	res := req.ep.res
	dryRun, err := isDryRun(r)
	if err != nil {
		return nil, 0, err
	}
	manager, err := managerName(r)
	if err != nil {
		return nil, 0, err
	}
	track := func(obj runtime.Object) (runtime.Object, error) {
		acc := accessor(obj)
		if applied != nil {
			acc.SetManagedFields(applied)
			return obj, nil
		}
		if e, ok := s.openapi.CreateEntry(obj, res.GVK(), res.New, manager, req.ep.reset); ok {
			acc.SetManagedFields([]metav1.ManagedFieldsEntry{e})
			return obj, nil
		}
		empty := res.New()
		setKindTo(empty, res.GVK())
		managed, err := req.ep.fieldManager.Update(empty, obj, manager)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("tracking managed fields: %w", err))
		}
		return managed, nil
	}
	out, err := req.ep.store.Create(ctx, obj, generic.CreateOptions{Namespace: req.namespace, DryRun: dryRun, Track: track})
	if err != nil {
		return nil, 0, err
	}
	if !dryRun {
		s.metrics.objectsCreated.Inc()
	}
	return out, http.StatusCreated, nil
}

// updateOptions are the store's options for an update of req: dry-run and
// managed fields tracked by the manager of the endpoint's part (the status
// one for status and other update subresources); applied: computed already.
func (s *Server) updateOptions(r *http.Request, req *request, applied bool) (generic.UpdateOptions, error) {
	dryRun, err := isDryRun(r)
	if err != nil {
		return generic.UpdateOptions{}, err
	}
	manager, err := managerName(r)
	if err != nil {
		return generic.UpdateOptions{}, err
	}
	opts := generic.UpdateOptions{Subresource: req.subresource, DryRun: dryRun}
	if req.subresource == "scale" {
		opts.Subresource = ""
	}
	if applied {
		return opts, nil
	}
	fm := req.ep.fieldManager
	if (opts.Subresource == "status" || req.ep.res.HasSubresource(opts.Subresource)) && req.ep.statusFM != nil {
		fm = req.ep.statusFM
	}
	opts.Track = func(obj, old runtime.Object) (runtime.Object, error) {
		out, err := fm.Update(old, obj, manager)
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("tracking managed fields: %w", err))
		}
		return out, nil
	}
	return opts, nil
}

func setKindTo(obj runtime.Object, gvk schema.GroupVersionKind) {
	obj.GetObjectKind().SetGroupVersionKind(gvk)
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	res := req.ep.res
	data, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.subresource == "scale" {
		s.updateScale(w, r, req, data)
		return
	}
	obj, err := s.decodeBody(w, r, data, res.New(), res.GVK())
	if err == nil {
		err = s.checkUnknownFields(w, r, req, obj)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if name := accessor(obj).GetName(); name != req.name {
		s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", name, req.name)))
		return
	}
	if ns := accessor(obj).GetNamespace(); res.Namespaced && ns != "" && ns != req.namespace {
		s.writeError(w, r, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
		return
	}
	var out runtime.Object
	if req.subresource == "finalize" {
		dryRun, derr := isDryRun(r)
		if derr != nil {
			s.writeError(w, r, derr)
			return
		}
		out, err = registry.FinalizeNamespace(ctx, req.ep.store, req.name, obj.(*corev1.Namespace), dryRun)
	} else {
		opts, oerr := s.updateOptions(r, req, false)
		if oerr != nil {
			s.writeError(w, r, oerr)
			return
		}
		out, err = req.ep.store.Update(ctx, req.namespace, req.name, opts, func(runtime.Object) (runtime.Object, error) {
			return obj.DeepCopyObject(), nil
		})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusOK, out)
}

func (s *Server) updateScale(w http.ResponseWriter, r *http.Request, req *request, data []byte) {
	ctx, cancel := requestContext(r)
	defer cancel()
	scaleGVK := autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	obj, err := s.decodeBody(w, r, data, &autoscalingv1.Scale{}, scaleGVK)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.applyScale(ctx, w, r, req, obj.(*autoscalingv1.Scale))
}

func (s *Server) applyScale(ctx context.Context, w http.ResponseWriter, r *http.Request, req *request, scale *autoscalingv1.Scale) {
	opts, err := s.updateOptions(r, req, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := req.ep.store.UpdateScale(ctx, req.namespace, req.name, scale, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusOK, out)
}

// deleteOptions reads DeleteOptions from the body or the query.
func deleteOptions(r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(data))) > 0 {
		dec, mt, err := decoderFor(r.Header.Get("Content-Type"), false)
		if err != nil {
			return nil, newUnsupportedMediaType(mt)
		}
		gvk := metav1.SchemeGroupVersion.WithKind("DeleteOptions")
		if _, _, err := dec.Decode(data, &gvk, opts); err != nil {
			return nil, apierrors.NewBadRequest("invalid delete options: " + err.Error())
		}
	} else if err := ParameterCodec.DecodeParameters(r.URL.Query(), schema.GroupVersion{Version: "v1"}, opts); err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if len(r.URL.Query()["dryRun"]) > 0 {
		opts.DryRun = r.URL.Query()["dryRun"]
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy: Unsupported value: %q", *opts.PropagationPolicy))
		}
	}
	return opts, nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	opts, err := deleteOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, accepted, err := req.ep.store.Delete(ctx, req.namespace, req.name, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if accepted {
		code = http.StatusAccepted
	}
	s.writeObject(w, r, req, code, out)
}

func (s *Server) deleteCollection(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	listOpts, err := listOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, err := deleteOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	deleted, rv, err := req.ep.store.DeleteCollection(ctx, req.namespace, listOpts, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeList(w, r, req, &generic.ListResult{Items: deleted, ResourceVersion: rv})
}

func (s *Server) bind(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	data, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := s.decodeBody(w, r, data, &corev1.Binding{}, corev1.SchemeGroupVersion.WithKind("Binding"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	dryRun, err := isDryRun(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := registry.BindPod(ctx, req.ep.store, req.namespace, req.name, obj.(*corev1.Binding), dryRun); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
}

func (s *Server) evict(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	data, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := s.decodeBody(w, r, data, &policyv1.Eviction{}, policyv1.SchemeGroupVersion.WithKind("Eviction"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	budgets := s.cfg.Registry.Store(policyv1.SchemeGroupVersion.WithResource("poddisruptionbudgets"))
	if err := registry.EvictPod(ctx, req.ep.store, budgets, req.namespace, req.name, obj.(*policyv1.Eviction)); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
}

// writeJSONList writes a list whose items come pre-encoded from the watch
// cache: the list envelope is encoded here, each item is copied as is.
func (s *Server) writeJSONList(w http.ResponseWriter, r *http.Request, list runtime.Object, result *generic.ListResult) {
	// The envelope is the empty list with its metadata; its "items" is cut off
	// and the cached items are spliced in.
	envelope, err := jsonMarshal(list)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	i := bytes.LastIndex(envelope, []byte(liststream.ItemsMarker))
	if i < 0 {
		// An envelope without the marker would be a bug; fall back to the
		// generic encoder.
		if err := meta.SetList(list, result.Items); err != nil {
			s.writeError(w, r, err)
			return
		}
		choice, _ := negotiate(r, allowTable)
		s.encode(w, http.StatusOK, choice, list)
		return
	}
	if err := liststream.JSON(w, envelope, i, result); err != nil {
		s.writeError(w, r, err)
	}
}

// checkUnknownFields applies the field validation directive to the fields
// a schema-pruned kind (a custom resource) does not know: Strict refuses
// them, Warn names them in Warning headers, Ignore lets pruning drop them.
func (s *Server) checkUnknownFields(w http.ResponseWriter, r *http.Request, req *request, obj runtime.Object) error {
	if req.ep.res.UnknownFields == nil {
		return nil
	}
	directive, err := fieldValidation(r)
	if err != nil || directive == metav1.FieldValidationIgnore {
		return err
	}
	unknown := req.ep.res.UnknownFields(obj)
	if len(unknown) == 0 {
		return nil
	}
	msgs := make([]string, 0, len(unknown))
	for _, f := range unknown {
		msgs = append(msgs, fmt.Sprintf("unknown field %q", f))
	}
	if directive == metav1.FieldValidationStrict {
		return apierrors.NewBadRequest("strict decoding error: " + strings.Join(msgs, ", "))
	}
	for _, m := range msgs {
		w.Header().Add("Warning", fmt.Sprintf("299 - %q", m))
	}
	return nil
}
