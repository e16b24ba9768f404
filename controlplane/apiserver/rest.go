package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/storage"
)

// Namespaces that can never be deleted.
var undeletableNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

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
	case "log", "exec", "attach", "portforward", "proxy":
		if res.Kind != "Pod" {
			s.notFound(w, r)
			return
		}
		if req.subresource == "proxy" {
			s.writeError(w, r, apierrors.NewServiceUnavailable("pods/proxy is not served by Petrel yet; use kubectl port-forward"))
			return
		}
		s.proxyToNode(w, r, req)
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

func nameValidator(res *registry.Resource) apivalidation.ValidateNameFunc {
	switch {
	case res.NameValidator != nil:
		return res.NameValidator
	case res.DNSLabelName:
		return apivalidation.NameIsDNSLabel
	default:
		return apivalidation.NameIsDNSSubdomain
	}
}

func (s *Server) key(req *request) string {
	return req.ep.store.Key(req.namespace, req.name)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	obj, err := req.ep.store.Get(ctx, s.key(req), req.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.subresource == "scale" {
		s.writeObject(w, r, req, http.StatusOK, scaleFor(req.ep.res, obj))
		return
	}
	s.writeObject(w, r, req, http.StatusOK, obj)
}

func scaleFor(res *registry.Resource, obj runtime.Object) *autoscalingv1.Scale {
	acc := accessor(obj)
	spec, status, sel := res.Scale.Get(obj)
	return &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: acc.GetName(), Namespace: acc.GetNamespace(), UID: acc.GetUID(),
			ResourceVersion: acc.GetResourceVersion(), CreationTimestamp: acc.GetCreationTimestamp()},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel},
	}
}

// listOptions decodes and checks the query of a list or watch.
func (s *Server) listOptions(r *http.Request, req *request) (*metav1.ListOptions, storage.Predicate, error) {
	var opts metav1.ListOptions
	if err := ParameterCodec.DecodeParameters(r.URL.Query(), schema.GroupVersion{Version: "v1"}, &opts); err != nil {
		return nil, storage.Predicate{}, apierrors.NewBadRequest(err.Error())
	}
	var p storage.Predicate
	if opts.LabelSelector != "" {
		sel, err := labels.Parse(opts.LabelSelector)
		if err != nil {
			return nil, p, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
		}
		p.Label = sel
	}
	if opts.FieldSelector != "" {
		sel, err := fields.ParseSelector(opts.FieldSelector)
		if err != nil {
			return nil, p, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
		}
		known := req.ep.res.SelectableFields(req.ep.res.New())
		for _, rq := range sel.Requirements() {
			if _, ok := known[rq.Field]; !ok {
				return nil, p, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", rq.Field))
			}
		}
		p.Field = sel
	}
	return &opts, p, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	opts, pred, err := s.listOptions(r, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	result, err := req.ep.store.List(ctx, storage.ListOptions{
		Prefix: req.ep.store.NamespacePrefix(req.namespace), Predicate: pred,
		ResourceVersion: opts.ResourceVersion, ResourceVersionMatch: opts.ResourceVersionMatch,
		Limit: opts.Limit, Continue: opts.Continue,
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeList(w, r, req, result)
}

func (s *Server) writeList(w http.ResponseWriter, r *http.Request, req *request, result *storage.ListResult) {
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
	choice, ok := negotiate(r, allowTable)
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
	if choice.contentType == protobufContentType && result.ItemProto != nil {
		s.writeProtoList(w, r, list, result)
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
	choice, ok := negotiate(r, allowTable)
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

// checkNamespace enforces that a namespaced write goes to an existing, active namespace.
func (s *Server) checkNamespace(ctx context.Context, req *request, creating bool) error {
	if !req.ep.res.Namespaced || s.namespaces == nil {
		return nil
	}
	// The watch cache answers almost always; a namespace created a moment ago
	// may not be there yet, so a miss asks etcd.
	obj, ok := s.namespaces.CachedGet(s.namespaces.Key("", req.namespace))
	var err error
	if !ok {
		obj, err = s.namespaces.Get(ctx, s.namespaces.Key("", req.namespace), req.namespace)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, req.namespace)
		}
		return err
	}
	ns := obj.(*corev1.Namespace)
	if creating && (ns.Status.Phase == corev1.NamespaceTerminating || ns.DeletionTimestamp != nil) {
		err := apierrors.NewForbidden(req.ep.res.GVR.GroupResource(), "", fmt.Errorf("unable to create new content in namespace %s because it is being terminated", req.namespace))
		err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Message: fmt.Sprintf("namespace %s is being terminated", req.namespace), Field: "metadata.namespace"}}
		return err
	}
	return nil
}

const nameSuffixChars = "bcdfghjklmnpqrstvwxz2456789"

func generateName(base string) string {
	const maxBase = 58
	if len(base) > maxBase {
		base = base[:maxBase]
	}
	b := make([]byte, 5)
	for i := range b {
		b[i] = nameSuffixChars[rand.IntN(len(nameSuffixChars))]
	}
	return base + string(b)
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
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, code, err := s.createObject(ctx, r, req, obj)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, code, out)
}

// createObject runs the create pipeline: metadata, defaults, validation,
// managed fields, allocation and the store.
func (s *Server) createObject(ctx context.Context, r *http.Request, req *request, obj runtime.Object) (runtime.Object, int, error) {
	return s.createObjectWith(ctx, r, req, obj, nil)
}

// createObjectWith creates obj; applied carries the managed fields of a
// server-side apply (nil for a plain create).
func (s *Server) createObjectWith(ctx context.Context, r *http.Request, req *request, obj runtime.Object, applied []metav1.ManagedFieldsEntry) (runtime.Object, int, error) {
	res := req.ep.res
	dryRun, err := isDryRun(r)
	if err != nil {
		return nil, 0, err
	}
	manager, err := managerName(r)
	if err != nil {
		return nil, 0, err
	}
	acc := accessor(obj)
	if res.Namespaced {
		if acc.GetNamespace() == "" {
			acc.SetNamespace(req.namespace)
		} else if acc.GetNamespace() != req.namespace {
			return nil, 0, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
	} else {
		acc.SetNamespace("")
	}
	if acc.GetName() == "" && acc.GetGenerateName() != "" {
		acc.SetName(generateName(acc.GetGenerateName()))
	}
	req.name = acc.GetName()
	if err := s.checkNamespace(ctx, req, true); err != nil {
		return nil, 0, err
	}
	acc.SetUID(types.UID(uuid.NewString()))
	acc.SetCreationTimestamp(metav1.Now())
	acc.SetResourceVersion("")
	acc.SetDeletionTimestamp(nil)
	acc.SetDeletionGracePeriodSeconds(nil)
	acc.SetSelfLink("")
	if res.GenerationOnSpec {
		acc.SetGeneration(1)
	} else {
		acc.SetGeneration(0)
	}
	if res.HasStatus && res.Kind != "Node" {
		registry.ClearStatus(obj)
	}
	if res.PrepareForCreate != nil {
		res.PrepareForCreate(obj)
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		s.admitServiceAccount(ctx, pod)
	}
	if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
		setRequester(ctx, csr)
	}
	if res.Default != nil {
		res.Default(obj)
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		if err := s.admitLimitRanges(ctx, pod); err != nil {
			return nil, 0, err
		}
	}
	if errs := s.validateCreate(req, obj); len(errs) > 0 {
		return nil, 0, apierrors.NewInvalid(res.GVK().GroupKind(), acc.GetName(), errs)
	}
	if err := s.admitRBAC(ctx, obj); err != nil {
		return nil, 0, err
	}
	if err := s.admitNodeCreate(ctx, req, obj, nil); err != nil {
		return nil, 0, err
	}
	// Last, as in Kubernetes: what is refused after this was charged.
	if err := s.admitQuota(ctx, req, obj, dryRun); err != nil {
		return nil, 0, err
	}
	acc.SetManagedFields(nil)
	setKindTo(obj, res.GVK())
	if applied != nil {
		acc.SetManagedFields(applied)
	} else if e, ok := s.openapi.createFields.entry(obj, res.GVK(), res.New, manager, req.ep.reset); ok {
		acc.SetManagedFields([]metav1.ManagedFieldsEntry{e})
	} else {
		empty := res.New()
		setKindTo(empty, res.GVK())
		managed, err := req.ep.fieldManager.Update(empty, obj, manager)
		if err != nil {
			return nil, 0, apierrors.NewInternalError(fmt.Errorf("tracking managed fields: %w", err))
		}
		obj = managed
	}
	var release func()
	if res.Hooks != nil {
		release, err = res.Hooks.BeforeCreate(ctx, obj, dryRun)
		if err != nil {
			return nil, 0, err
		}
	}
	if dryRun {
		if release != nil {
			release()
		}
		return obj, http.StatusCreated, nil
	}
	acc = accessor(obj)
	out, err := req.ep.store.Create(ctx, req.ep.store.Key(acc.GetNamespace(), acc.GetName()), obj)
	if err != nil {
		if release != nil {
			release()
		}
		return nil, 0, err
	}
	s.metrics.objectsCreated.Inc()
	return out, http.StatusCreated, nil
}

func (s *Server) validateCreate(req *request, obj runtime.Object) field.ErrorList {
	res := req.ep.res
	acc := accessor(obj)
	errs := apivalidation.ValidateObjectMetaAccessor(acc, res.Namespaced, nameValidator(res), field.NewPath("metadata"))
	if res.Validate != nil {
		errs = append(errs, res.Validate(obj)...)
	}
	return errs
}

// prepareUpdate turns a client's new object into what is stored, given the
// current one: immutable metadata kept, the status/spec split enforced,
// defaults, generation, validation and managed fields (unless applied is set:
// server-side apply has computed them already).
func (s *Server) prepareUpdate(req *request, obj, cur runtime.Object, manager string, applied bool) (runtime.Object, error) {
	res := req.ep.res
	acc, curAcc := accessor(obj), accessor(cur)
	if rv := acc.GetResourceVersion(); rv != "" && rv != curAcc.GetResourceVersion() {
		return nil, apierrors.NewConflict(res.GVR.GroupResource(), curAcc.GetName(), errors.New(registryOptimisticLockMsg))
	}
	if acc.GetName() != curAcc.GetName() {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", acc.GetName(), curAcc.GetName()))
	}
	acc.SetNamespace(curAcc.GetNamespace())
	acc.SetUID(curAcc.GetUID())
	acc.SetCreationTimestamp(curAcc.GetCreationTimestamp())
	acc.SetDeletionTimestamp(curAcc.GetDeletionTimestamp())
	acc.SetDeletionGracePeriodSeconds(curAcc.GetDeletionGracePeriodSeconds())
	acc.SetGeneration(curAcc.GetGeneration())
	acc.SetResourceVersion(curAcc.GetResourceVersion())
	acc.SetSelfLink("")
	status := req.subresource == "status"
	if res.HasStatus && !res.HasSubresource(req.subresource) {
		if status {
			registry.CopyField(obj, cur, "Spec")
		} else {
			registry.CopyStatus(obj, cur)
		}
	}
	if res.PrepareForUpdate != nil {
		res.PrepareForUpdate(req.subresource, obj, cur)
	}
	if res.Default != nil {
		res.Default(obj)
	}
	if res.GenerationOnSpec && registry.SpecChanged(obj, cur) {
		acc.SetGeneration(curAcc.GetGeneration() + 1)
	}
	errs := apivalidation.ValidateObjectMetaAccessorUpdate(acc, curAcc, field.NewPath("metadata"))
	errs = append(errs, apivalidation.ValidateObjectMetaAccessor(acc, res.Namespaced, nameValidator(res), field.NewPath("metadata"))...)
	if res.Validate != nil {
		errs = append(errs, res.Validate(obj)...)
	}
	if res.ValidateUpdate != nil && req.subresource == "" {
		errs = append(errs, res.ValidateUpdate(obj, cur)...)
	}
	if res.ValidateSubresourceUpdate != nil && req.subresource != "" {
		errs = append(errs, res.ValidateSubresourceUpdate(req.subresource, obj, cur)...)
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(res.GVK().GroupKind(), curAcc.GetName(), errs)
	}
	fm := req.ep.fieldManager
	if (status || res.HasSubresource(req.subresource)) && req.ep.statusFM != nil {
		fm = req.ep.statusFM
	}
	setKindTo(obj, res.GVK())
	setKindTo(cur, res.GVK())
	if !applied {
		var err error
		if obj, err = fm.Update(cur, obj, manager); err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("tracking managed fields: %w", err))
		}
	}
	if semanticEqualIgnoringRV(obj, cur) {
		return nil, storage.ErrNoChange
	}
	acc = accessor(obj)
	if acc.GetDeletionTimestamp() != nil && len(acc.GetFinalizers()) == 0 {
		return nil, nil // the last finalizer is gone: the object goes.
	}
	return obj, nil
}

const registryOptimisticLockMsg = "the object has been modified; please apply your changes to the latest version and try again"

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
	manager, err := managerName(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.guaranteedUpdate(ctx, r, req, func(cur runtime.Object) (runtime.Object, error) {
		if req.subresource == "finalize" {
			ns := obj.DeepCopyObject().(*corev1.Namespace)
			curNs := cur.(*corev1.Namespace).DeepCopy()
			curNs.Spec.Finalizers = ns.Spec.Finalizers
			if curNs.DeletionTimestamp != nil && len(curNs.Spec.Finalizers) == 0 && len(curNs.Finalizers) == 0 {
				return nil, nil
			}
			return curNs, nil
		}
		return s.prepareUpdate(req, obj.DeepCopyObject(), cur, manager, false)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusOK, out)
}

// guaranteedUpdate runs an update func against the store with dry-run and the
// resource's hooks.
func (s *Server) guaranteedUpdate(ctx context.Context, r *http.Request, req *request, fn storage.UpdateFunc) (runtime.Object, error) {
	dryRun, err := isDryRun(r)
	if err != nil {
		return nil, err
	}
	res := req.ep.res
	var release func()
	wrapped := func(cur runtime.Object) (runtime.Object, error) {
		next, err := fn(cur)
		if err != nil || next == nil {
			return next, err
		}
		if err := s.admitRBAC(ctx, next); err != nil {
			return nil, err
		}
		if err := s.admitNodeUpdate(ctx, req, next, cur); err != nil {
			return nil, err
		}
		if csr, ok := next.(*certificatesv1.CertificateSigningRequest); ok {
			if err := s.admitCSRUpdate(ctx, req, csr, cur.(*certificatesv1.CertificateSigningRequest)); err != nil {
				return nil, err
			}
		}
		if res.Hooks != nil {
			if release != nil {
				release()
			}
			release, err = res.Hooks.BeforeUpdate(ctx, next, cur, dryRun)
			if err != nil {
				return nil, err
			}
		}
		if dryRun {
			return next, errDryRun{next}
		}
		return next, nil
	}
	out, deleted, err := req.ep.store.GuaranteedUpdate(ctx, s.key(req), req.name, wrapped)
	var dr errDryRun
	if errors.As(err, &dr) {
		if release != nil {
			release()
		}
		return dr.obj, nil
	}
	if err != nil {
		if release != nil {
			release()
		}
		return nil, err
	}
	if deleted && res.Hooks != nil {
		res.Hooks.AfterDelete(ctx, out)
	}
	return out, nil
}

type errDryRun struct{ obj runtime.Object }

func (e errDryRun) Error() string { return "dry run" }

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
	res := req.ep.res
	if scale.Spec.Replicas < 0 {
		s.writeError(w, r, apierrors.NewInvalid(schema.GroupKind{Group: "autoscaling", Kind: "Scale"}, req.name,
			field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), scale.Spec.Replicas, "must be greater than or equal to 0")}))
		return
	}
	manager, err := managerName(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	mainReq := *req
	mainReq.subresource = ""
	out, err := s.guaranteedUpdate(ctx, r, &mainReq, func(cur runtime.Object) (runtime.Object, error) {
		if rv := scale.ResourceVersion; rv != "" && rv != accessor(cur).GetResourceVersion() {
			return nil, apierrors.NewConflict(res.GVR.GroupResource(), req.name, errors.New(registryOptimisticLockMsg))
		}
		next := cur.DeepCopyObject()
		res.Scale.Set(next, scale.Spec.Replicas)
		accessor(next).SetResourceVersion("")
		return s.prepareUpdate(&mainReq, next, cur, manager, false)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusOK, scaleFor(res, out))
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
	out, code, err := s.deleteObject(ctx, req, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, code, out)
}

// deleteObject deletes now, or marks the object for deletion when finalizers,
// a foreground/orphan propagation or a pod's grace period must run first.
func (s *Server) deleteObject(ctx context.Context, req *request, opts *metav1.DeleteOptions) (runtime.Object, int, error) {
	res := req.ep.res
	if res.Kind == "Namespace" && res.GVR.Group == "" && undeletableNamespaces[req.name] {
		return nil, 0, apierrors.NewForbidden(res.GVR.GroupResource(), req.name, errors.New("this namespace may not be deleted"))
	}
	dryRun := len(opts.DryRun) > 0
	code := http.StatusOK
	out, deleted, err := req.ep.store.GuaranteedUpdate(ctx, s.key(req), req.name, func(cur runtime.Object) (runtime.Object, error) {
		acc := accessor(cur)
		if err := s.admitNodeDelete(ctx, req, cur); err != nil {
			return nil, err
		}
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != acc.GetUID() {
				return nil, apierrors.NewConflict(res.GVR.GroupResource(), req.name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, acc.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != acc.GetResourceVersion() {
				return nil, apierrors.NewConflict(res.GVR.GroupResource(), req.name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, acc.GetResourceVersion()))
			}
		}
		next := cur.DeepCopyObject()
		nacc := accessor(next)
		finalizers := nacc.GetFinalizers()
		policy := metav1.DeletePropagationBackground
		if opts.PropagationPolicy != nil {
			policy = *opts.PropagationPolicy
		} else if opts.OrphanDependents != nil && *opts.OrphanDependents {
			policy = metav1.DeletePropagationOrphan
		}
		switch policy {
		case metav1.DeletePropagationForeground:
			finalizers = addString(finalizers, metav1.FinalizerDeleteDependents)
		case metav1.DeletePropagationOrphan:
			finalizers = addString(finalizers, metav1.FinalizerOrphanDependents)
		}
		nacc.SetFinalizers(finalizers)
		grace := s.gracePeriod(next, opts)
		ns, isNamespace := next.(*corev1.Namespace)
		if isNamespace && res.GVR.Group == "" {
			if nacc.GetDeletionTimestamp() != nil {
				return nil, storage.ErrNoChange
			}
			now := metav1.Now()
			nacc.SetDeletionTimestamp(&now)
			zero := int64(0)
			nacc.SetDeletionGracePeriodSeconds(&zero)
			ns.Status.Phase = corev1.NamespaceTerminating
			if len(ns.Spec.Finalizers) == 0 && len(finalizers) == 0 {
				return nil, nil
			}
			code = http.StatusOK
			return next, nil
		}
		if nacc.GetDeletionTimestamp() != nil {
			// Already terminating: a shorter grace period may still cut it short.
			if grace == 0 && len(finalizers) == 0 {
				return nil, nil
			}
			if len(finalizers) != len(acc.GetFinalizers()) {
				return next, nil
			}
			return nil, storage.ErrNoChange
		}
		if len(finalizers) == 0 && grace == 0 {
			return nil, nil
		}
		now := metav1.NewTime(time.Now().Add(time.Duration(grace) * time.Second))
		nacc.SetDeletionTimestamp(&now)
		nacc.SetDeletionGracePeriodSeconds(&grace)
		if grace == 0 {
			n := metav1.Now()
			nacc.SetDeletionTimestamp(&n)
		}
		code = http.StatusAccepted
		if dryRun {
			return next, errDryRun{next}
		}
		return next, nil
	})
	var dr errDryRun
	if errors.As(err, &dr) {
		return dr.obj, http.StatusAccepted, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if deleted {
		code = http.StatusOK
		if res.Hooks != nil {
			res.Hooks.AfterDelete(ctx, out)
		}
	}
	return out, code, nil
}

// gracePeriod is how long a deleted object lingers: only pods bound to a node
// get one, as in Kubernetes.
func (s *Server) gracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) int64 {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return 0
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0
	}
	if opts.GracePeriodSeconds != nil {
		if *opts.GracePeriodSeconds < 0 {
			return 1
		}
		return *opts.GracePeriodSeconds
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return corev1.DefaultTerminationGracePeriodSeconds
}

func addString(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func (s *Server) deleteCollection(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	_, pred, err := s.listOptions(r, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, err := deleteOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	result, err := req.ep.store.List(ctx, storage.ListOptions{Prefix: req.ep.store.NamespacePrefix(req.namespace), Predicate: pred})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var deleted []runtime.Object
	for _, item := range result.Items {
		acc := accessor(item)
		one := *req
		one.name, one.namespace = acc.GetName(), acc.GetNamespace()
		out, _, err := s.deleteObject(ctx, &one, opts)
		if err != nil && !apierrors.IsNotFound(err) {
			s.writeError(w, r, err)
			return
		}
		if out != nil {
			deleted = append(deleted, out)
		}
	}
	s.writeList(w, r, req, &storage.ListResult{Items: deleted, ResourceVersion: result.ResourceVersion})
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
	b := obj.(*corev1.Binding)
	if b.Target.Name == "" {
		s.writeError(w, r, apierrors.NewInvalid(schema.GroupKind{Kind: "Binding"}, b.Name, field.ErrorList{field.Required(field.NewPath("target", "name"), "")}))
		return
	}
	if b.Name != "" && b.Name != req.name {
		s.writeError(w, r, apierrors.NewBadRequest("the name of the binding does not match the pod"))
		return
	}
	podReq := *req
	podReq.subresource = ""
	_, err = s.guaranteedUpdate(ctx, r, &podReq, func(cur runtime.Object) (runtime.Object, error) {
		pod := cur.(*corev1.Pod).DeepCopy()
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(req.ep.res.GVR.GroupResource(), req.name, errors.New("pod is being deleted, cannot be assigned to a host"))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(req.ep.res.GVR.GroupResource(), req.name, fmt.Errorf("pod %s is already assigned to node %q", req.name, pod.Spec.NodeName))
		}
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(req.ep.res.GVR.GroupResource(), req.name, errors.New("precondition failed: UID does not match"))
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodCondition(&pod.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
		return pod, nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
}

func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
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
	ev := obj.(*policyv1.Eviction)
	opts := ev.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	podReq := *req
	podReq.subresource = ""
	cur, err := req.ep.store.Get(ctx, s.key(&podReq), req.name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if pod := cur.(*corev1.Pod); pod.DeletionTimestamp == nil {
		if err := s.checkDisruptionBudget(ctx, pod); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if _, _, err := s.deleteObject(ctx, &podReq, opts); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusCreated, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
}

// writeJSONList writes a list whose items come pre-encoded from the watch
// cache: the list envelope is encoded here, each item is copied as is.
func (s *Server) writeJSONList(w http.ResponseWriter, r *http.Request, list runtime.Object, result *storage.ListResult) {
	// The envelope is the empty list with its metadata; its "items" is cut off
	// and the cached items are spliced in.
	envelope, err := jsonMarshal(list)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	const marker = `"items":null`
	i := bytes.LastIndex(envelope, []byte(marker))
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
	// Every item's JSON is fetched (encoded if the cache has not yet) before
	// the status line, so that an encoding error can still be the answer.
	if err := encodeItems(len(result.Items), result.ItemJSON); err != nil {
		s.writeError(w, r, err)
		return
	}
	bw, release := startListResponse(w, "application/json")
	defer release()
	_, _ = bw.Write(envelope[:i])
	_, _ = bw.WriteString(`"items":[`)
	for n := range result.Items {
		if n > 0 {
			_ = bw.WriteByte(',')
		}
		data, _ := result.ItemJSON(n)
		_, _ = bw.Write(data)
	}
	_ = bw.WriteByte(']')
	_, _ = bw.Write(envelope[i+len(marker):])
	_ = bw.WriteByte('\n')
	_ = bw.Flush()
}

// encodeItems makes sure every item of a list has its encoding (item: its
// JSON or protobuf) in the watch cache. Items changed since the last read
// are encoded again, about 35 µs for a pod as JSON: a list of thousands just
// after they changed is split across the cores.
func encodeItems(n int, item func(i int) ([]byte, error)) error {
	workers := goruntime.GOMAXPROCS(0)
	if n < 512 || workers == 1 {
		for i := range n {
			if _, err := item(i); err != nil {
				return err
			}
		}
		return nil
	}
	var g errgroup.Group
	chunk := (n + workers - 1) / workers
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		g.Go(func() error {
			for i := start; i < end; i++ {
				if _, err := item(i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// startListResponse writes a list response's status and content type and
// returns a pooled buffered writer for its body, and the func that gives the
// writer back. Items are streamed through it rather than joined into one
// buffer: a list of 10,000 pods is some 30 MB, and allocating (and clearing)
// that per request made the garbage collector, which then marks the whole
// watch cache, the largest cost of a busy LIST.
func startListResponse(w http.ResponseWriter, contentType string) (*bufio.Writer, func()) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	bw := listWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw, func() {
		bw.Reset(nil)
		listWriters.Put(bw)
	}
}

// listWriters buffer streamed lists; 256 KiB is a few HTTP/2 frames'
// worth per write, so a list costs the connection a handful of writes per
// megabyte and no allocation.
var listWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}
