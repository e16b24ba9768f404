package customresource

import (
	"encoding/json"
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/conversion"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
)

// SetServiceResolver makes the converters of definitions with `Webhook`
// conversion reach a Service-referenced webhook through r (the admission
// webhooks' resolver: a ready endpoint of the Service). Call it before Run.
func (c *Controller) SetServiceResolver(r webhookutil.ServiceResolver) error {
	f, err := conversion.NewCRConverterFactory(r, nil)
	if err != nil {
		return fmt.Errorf("custom resource converters: %w", err)
	}
	c.converters = f
	return nil
}

// converter is the definition's converter between versions for its
// storage, nil for `None` conversion (only apiVersion changes).
func (c *Controller) converter(crd *apiextensionsv1.CustomResourceDefinition) (runtime.ObjectConvertor, error) {
	if crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextensionsv1.WebhookConverter {
		return nil, nil
	}
	if c.converters == nil {
		if err := c.SetServiceResolver(webhookutil.NewDefaultServiceResolver()); err != nil {
			return nil, err
		}
	}
	safe, _, err := c.converters.NewConverter(crd)
	return safe, err
}

// storageVersion is the version a definition's objects are stored in.
func storageVersion(crd *apiextensionsv1.CustomResourceDefinition) schema.GroupVersion {
	for _, v := range crd.Spec.Versions {
		if v.Storage {
			return schema.GroupVersion{Group: crd.Spec.Group, Version: v.Name}
		}
	}
	return schema.GroupVersion{Group: crd.Spec.Group, Version: crd.Spec.Versions[0].Name}
}

// jsonCodec stores unstructured objects as JSON. Without a converter (None
// conversion) an object is read back as the codec's version whatever
// version wrote it; with one (Webhook conversion) objects are stored in the
// storage version and read back converted, each through the webhook.
type jsonCodec struct {
	gvk     schema.GroupVersionKind
	conv    runtime.ObjectConvertor
	storage schema.GroupVersion
	// defaults applies the read version's schema defaults, as Kubernetes
	// defaults on read: an object stored before a default was added to the
	// schema is read with it. Nil without a schema.
	defaults func(map[string]interface{})
}

func (c jsonCodec) Encode(obj runtime.Object) ([]byte, error) {
	if c.conv != nil && obj.GetObjectKind().GroupVersionKind().GroupVersion() != c.storage {
		out, err := c.conv.ConvertToVersion(obj, c.storage)
		if err != nil {
			return nil, fmt.Errorf("converting to the storage version %s: %w", c.storage, err)
		}
		obj = out
	}
	return json.Marshal(obj)
}

func (c jsonCodec) Decode(data []byte, into runtime.Object) (runtime.Object, error) {
	u, ok := into.(*unstructured.Unstructured)
	if !ok {
		u = &unstructured.Unstructured{}
	}
	if err := u.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	if c.conv != nil && u.GroupVersionKind().GroupVersion() != c.gvk.GroupVersion() {
		out, err := c.conv.ConvertToVersion(u, c.gvk.GroupVersion())
		if err != nil {
			return nil, fmt.Errorf("converting to %s: %w", c.gvk.GroupVersion(), err)
		}
		cu, ok := out.(*unstructured.Unstructured)
		if !ok {
			return nil, fmt.Errorf("converting to %s: got %T", c.gvk.GroupVersion(), out)
		}
		*u = *cu
		c.applyDefaults(u)
		return u, nil
	}
	u.SetGroupVersionKind(c.gvk)
	c.applyDefaults(u)
	return u, nil
}

func (c jsonCodec) applyDefaults(u *unstructured.Unstructured) {
	if c.defaults != nil {
		c.defaults(u.Object)
	}
}
